"""What went wrong with the database, in words an operator can act on.

Answers and ``/readyz`` say what happened ("the disk holding the database is
full"); the driver's own text, which names tables, statements and internals,
goes to the server's log only.
"""

from __future__ import annotations

import errno

from sqlalchemy.exc import DBAPIError

from jobhooks.errors import StoreError

__all__ = ["describe_failure", "is_damaged", "refused_before_writing"]

_DAMAGED = ("database disk image is malformed", "file is not a database")

_SQLITE_CAUSES = (
    ("database or disk is full", "the disk holding the database is full"),
    ("file is too large", "the disk holding the database is full (file size limit)"),
    ("readonly database", "the database is read-only (check the data directory's permissions)"),
    ("unable to open database file", "the database file cannot be opened"),
    ("disk i/o error", "the disk holding the database failed to read or write"),
    ("database is locked", "the database is locked by another process"),
    ("database disk image is malformed", "the database file is corrupt"),
    ("file is not a database", "the database file is corrupt (not a SQLite database)"),
    ("no such table", "the database file has lost its tables (was it replaced?)"),
)
_URL_MISTAKES = ("bad value for ", "invalid connection option ", "invalid sslmode value")
"""What psycopg says of a setting in the URL's query before it reaches the server."""
_OS_CAUSES = {
    errno.ENOSPC: "the disk holding the database is full",
    errno.EFBIG: "the disk holding the database is full (file size limit)",
    errno.EROFS: "the database is on a read-only file system",
    errno.EACCES: "the database is not writable by this user",
    errno.EPERM: "the database is not writable by this user",
    errno.EIO: "the disk holding the database failed to read or write",
}


_SERVER_CAUSES = {
    "3D000": "the database named in the URL does not exist on the server (dropped or renamed?)",
    "28P01": "the database server refused the user's password",
    "28000": "the database server refused the user (its role, or pg_hba.conf)",
    "55P03": "a lock another session holds on jobhooks' tables did not come free in time",
    "53100": "the disk holding the database server's data is full",
    "53300": "the database server has no connection free (max_connections)",
    "57014": "the database server canceled a statement (statement_timeout, or an operator)",
    "57P01": "the database server ended the session (a restart, a failover, or an operator)",
}
"""What PostgreSQL's ``OperationalError`` says by its SQLSTATE, where it is not that the
server cannot be reached."""
_REFUSED_AT_CONNECT = (
    ('fatal:  database "', "3D000"),  # FATAL:  database "x" does not exist
    ("password authentication failed", "28P01"),
    ('fatal:  role "', "28000"),  # FATAL:  role "x" does not exist
    ("no pg_hba.conf entry", "28000"),
)


_WRITE_REFUSED = "SQLITE_IOERR_WRITE"
"""SQLite's name for a write the disk refused (a file system remounted read-only after an
error, or failing): its text is only "disk I/O error", as for a failed ``fsync``."""


def _sqlite_error_name(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None) or exc, "sqlite_errorname", None)


def is_damaged(exc: BaseException) -> bool:
    """True when SQLite says the file itself is damaged (overwritten under it, say): no
    write to it can be trusted any more."""
    text = str(getattr(exc, "orig", None) or exc).casefold()
    return any(marker in text for marker in _DAMAGED)


_REFUSED_BEFORE_WRITING = ("database or disk is full", "file is too large", "readonly database")
"""What SQLite says when a COMMIT could not write its transaction at all: it is rolled
back, not half kept (a failed ``fsync`` is another matter: what it wrote may be read back).
A write the disk refused (:data:`_WRITE_REFUSED`) is the same: SQLite writes a commit's
last frame, the one that makes it a commit, after the others, and stops at the first
write that fails."""


def refused_before_writing(exc: BaseException) -> bool:
    """True when SQLite refused a write for want of room or permission, or the disk refused
    it (read-only): nothing of the transaction it was in is stored, even when it failed at
    its COMMIT."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EROFS):
        return True
    if _sqlite_error_name(exc) == _WRITE_REFUSED:
        return True
    text = str(getattr(exc, "orig", None) or exc).casefold()
    return any(marker in text for marker in _REFUSED_BEFORE_WRITING)


def _server_operational(exc: BaseException) -> bool:
    """An ``OperationalError`` of PostgreSQL's driver (psycopg), wrapped by SQLAlchemy or
    not (as an attempt to connect raises it): the server could not be used."""
    driver = getattr(exc, "orig", None) or exc
    return any(
        kind.__name__ == "OperationalError" and kind.__module__.startswith("psycopg")
        for kind in type(driver).__mro__
    )


def describe_failure(exc: BaseException) -> str:
    """One sentence saying what went wrong, without the driver's internals."""
    if isinstance(exc, StoreError):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in _OS_CAUSES:
        return _OS_CAUSES[exc.errno]
    if _sqlite_error_name(exc) == _WRITE_REFUSED:
        return "the disk holding the database failed to write (read-only, or failing)"
    text = str(getattr(exc, "orig", None) or exc).casefold()
    for marker, cause in _SQLITE_CAUSES:
        if marker in text:
            return cause
    driver = str(getattr(exc, "orig", None) or exc)
    if any(marker in driver for marker in _URL_MISTAKES):
        return f"the database URL has a setting libpq cannot use ({driver.strip()})"
    if _server_operational(exc):
        sqlstate = getattr(getattr(exc, "orig", None) or exc, "sqlstate", None)
        if sqlstate in _SERVER_CAUSES:
            return _SERVER_CAUSES[sqlstate]
        for marker, code in _REFUSED_AT_CONNECT:
            if marker in text:  # an attempt to connect carries no SQLSTATE, only the text
                return _SERVER_CAUSES[code]
        if "connection timeout expired" in text:
            return (
                "the database server did not answer in time (connect_timeout; a hung "
                "server or pooler, or a firewall dropping the connection)"
            )
        return "the database server cannot be reached or refused the connection"
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return "the connection to the database server was lost"
    if getattr(getattr(exc, "orig", None), "sqlstate", None) == "42P01":
        return "the database has lost its tables (was it replaced, or created anew?)"
    return "the database refused the statement (the server's log has the details)"
