"""Checkpoint SQLite's write-ahead log mostly from a thread of its own.

SQLite normally checkpoints inside whichever commit crosses a threshold,
which would stall the group-commit writer (and every check-in waiting on
it) while pages are copied. Here commits never checkpoint: this thread
copies the log into the database in PASSIVE mode (which never blocks the
writer), and the writer itself runs a short catch-up once a second
(:meth:`WalCheckpointer.catch_up`), so that the log is fully copied at the
start of its next transaction and SQLite starts the log over instead of
letting it grow while writes never pause.

A checkpoint that fails for want of room (a full disk: the database file must grow
to take the log's new pages) holds every write back until one succeeds
(:meth:`WalCheckpointer.make_room`): otherwise the writes would take whatever room is
freed, the log would grow into it, and the node would stay full for good.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from sqlalchemy import Engine

from jobhooks.store.failures import refused_before_writing

__all__ = ["WalCheckpointer"]

logger = logging.getLogger("jobhooks.store")


class WalCheckpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval`` seconds."""

    def __init__(self, engine: Engine, interval: float = 1.0) -> None:
        self._engine = engine
        self._interval = interval
        self._stop = threading.Event()
        self._failing = False
        self._no_room = False
        """The last checkpoint failed for want of room (or permission) to write."""
        self._thread = threading.Thread(target=self._run, name="jobhooks-checkpoint", daemon=True)

    def start(self) -> None:
        """Start checkpointing."""
        self._thread.start()

    def stop(self) -> None:
        """Checkpoint once more and stop."""
        self._stop.set()
        self._thread.join(timeout=10)
        self.checkpoint()

    def checkpoint(self) -> None:
        """Copy committed pages from the log into the database file."""
        with contextlib.suppress(Exception):  # logged, and tried again
            self._copy()

    def make_room(self) -> None:
        """Before a write (on the writer thread): while the last checkpoint failed for want
        of room, checkpoint first, and raise its error when it fails again, so that room
        freed on the disk goes to the checkpoint (after which the log starts over in the
        room it has) rather than to a log that can never be copied."""
        if self._no_room:
            self._copy()

    def _copy(self) -> None:
        try:
            autocommit = self._engine.execution_options(isolation_level="AUTOCOMMIT")
            with autocommit.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception as exc:
            # Logged once per outage (a full disk fails every second until it is freed).
            if not self._failing:
                logger.warning("checkpointing the SQLite log failed (%s); trying again", exc)
            self._failing = True
            self._no_room = refused_before_writing(exc)
            raise
        if self._failing:
            logger.info("checkpointing the SQLite log works again")
        self._failing = False
        self._no_room = False

    def catch_up(self) -> None:
        """Copy the last few pages, from the writer thread between two transactions."""
        self.checkpoint()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.checkpoint()
