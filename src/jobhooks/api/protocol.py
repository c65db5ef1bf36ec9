"""The HTTP protocol ``serve`` speaks: uvicorn's (httptools), each answer sent in one
write, each request bounded in size and in time.

An ASGI app answers in two messages, the status line and headers, then the body,
and uvicorn writes each to the socket as it comes: two ``send`` system calls and,
on a loopback or a LAN, two segments the client wakes up for. An orchestrator's
check-in is a few hundred bytes each way, so the second write is a good part of
what answering costs. :class:`OneWriteProtocol` holds a write until the next one
(an answer's body follows its head at once) and sends the two together; a write
nothing follows in the same turn of the event loop is sent at the end of it.

uvicorn itself bounds neither a request's head nor how long a client may take to send
it: a client could send headers for ever (each kept in memory) or hold a connection
with a request it never finishes. Here a request whose line, headers and trailers go
over :data:`HEAD_LIMIT` bytes is answered 431, a request not received whole within
:data:`REQUEST_TIMEOUT` seconds of its first byte is answered 408 (after the answers to
the requests before it), and a connection that sends nothing is closed after the
keep-alive timeout, as between two requests. A request that arrives in one read (a
check-in does) costs none of this a timer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

__all__ = [
    "HEAD_LIMIT",
    "JOIN_UP_TO",
    "LINGER",
    "REQUEST_TIMEOUT",
    "CoalescingTransport",
    "OneWriteProtocol",
]

logger = logging.getLogger("jobhooks.api")

HEAD_LIMIT = 64 * 1024
"""Bytes a request's line and headers may take (a large Kerberos or bearer token fits)."""
REQUEST_TIMEOUT = 30.0
"""Seconds within which a request must arrive whole, counted from its first byte."""
LINGER = 2.0
"""Seconds a refused client has to read the refusal before the connection is closed."""

JOIN_UP_TO = 64 * 1024
"""Bytes up to which a write is joined to the held one; a larger one follows it instead
(two system calls cost less than copying it)."""


class CoalescingTransport:
    """A transport that sends its writes two by two: one is held until the next, or until
    the end of the event loop's turn when none follows.

    Everything else goes to the wrapped transport; closing it (or writing EOF) sends
    what is held first, aborting it drops what is held. Sending as soon as the second
    write comes, rather than at the end of the turn, keeps each answer's timing as it
    was: only the system call for its head is saved.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hold ``data`` (a copy when it may change) or send it after what is held."""
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        held, self._held = self._held, None
        if self._transport.is_closing():
            return
        if len(data) > JOIN_UP_TO:
            self._transport.write(held)
            self._transport.write(data)
        else:
            self._transport.write(held + data)

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write each of ``chunks`` (see :meth:`write`)."""
        for chunk in chunks:
            self.write(chunk)

    def is_closing(self) -> bool:
        """Whether the connection is closing (asked for every read: not through
        ``__getattr__``)."""
        return self._transport.is_closing()

    def flush(self) -> None:
        """Send what is held now (nothing when the connection is closing)."""
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held)

    def write_eof(self) -> None:
        """Send what is held, then EOF."""
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Send what is held, then close."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        """Close at once; what is held is dropped."""
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


_on_url = HttpToolsProtocol.on_url
_on_header = HttpToolsProtocol.on_header  # called once per header: without super()'s lookup


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`CoalescingTransport`, refusing a request
    whose line, headers and trailers go over :data:`HEAD_LIMIT` bytes (431) or that is
    not received whole within :data:`REQUEST_TIMEOUT` seconds (408).

    A refusal is sent once every answer to an earlier request on the connection is out
    (pipelined requests are answered in order), then nothing more is read, and the
    connection is closed once the client has had :data:`LINGER` seconds to read it.
    """

    _coalescing: CoalescingTransport
    _head_bytes = 0
    """Bytes received since the last head ended (or the connection began), for a head
    that never ends."""
    _field_bytes = 0
    """Bytes of the current request's line, headers and trailers, as parsed."""
    _in_head = True
    """A request's head is awaited or being received."""
    _receiving = False
    """A request has begun and has not been received whole."""
    _oversized = False
    """The current request went over :data:`HEAD_LIMIT`: it is not served."""
    _oversized_in_trailers = False
    """... after its head, when a cycle had been made for it."""
    _overdue: asyncio.TimerHandle | None = None
    _refusal: bytes | None = None
    """A refusal waiting for the answers to earlier requests."""
    _refused_own = False
    """The refused request has a cycle of its own (its body or trailers were refused)."""
    _refused = False
    """Nothing more is read: what comes is dropped."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._coalescing = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        coalescing: Any = self._coalescing
        super().connection_made(coalescing)
        # Nothing sent yet: closed after the keep-alive timeout, as between two requests.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def eof_received(self) -> None:
        # The client sent all it will send, and the event loop closes the connection once
        # this returns: what is held goes out first (uvloop reads the EOF before the turn's
        # end, where a held write would otherwise have been sent).
        self._coalescing.flush()
        super().eof_received()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # A request received whole in this read (as most are) leaves nothing to check.
        if self._oversized or (self._in_head and self._head_bytes > HEAD_LIMIT):
            if not self.transport.is_closing():
                own = self._oversized_in_trailers
                reason = f"the request's line, headers and trailers are over {HEAD_LIMIT} bytes"
                self._refuse(431, reason, own=own)
        elif self._receiving and self._overdue is None and not self.transport.is_closing():
            # Armed by the read in which the request began: timed from its first bytes.
            self._overdue = self.loop.call_later(REQUEST_TIMEOUT, self._request_timed_out)

    # -- the parser's callbacks ---------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._receiving = True
        self._field_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._field_bytes += len(url)
        if self._field_bytes > HEAD_LIMIT:
            self._oversized = True  # once over, it stays over: nothing more is kept
            return
        _on_url(self, url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Trailers come here too, after the head: they count with it.
        size = self._field_bytes + len(name) + len(value) + 4
        self._field_bytes = size
        if size > HEAD_LIMIT:
            if not self._oversized:
                self._oversized = True
                self._oversized_in_trailers = not self._in_head
            return
        _on_header(self, name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if not self._oversized:  # an oversized request is not served at all
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._oversized:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._receiving = False
        self._in_head = True
        if self._overdue is not None:
            self._stop_timer()
        if not self._oversized:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal is not None:
            self._send_refusal_when_due()
        elif self._receiving and not self.transport.is_closing():
            # The next request has begun, and the server reads it only from now on: its
            # own timer counts from here, and uvicorn's keep-alive timer, which would
            # close the connection under it, is not wanted.
            self._unset_keepalive_if_required()
            self._stop_timer()
            self._overdue = self.loop.call_later(REQUEST_TIMEOUT, self._request_timed_out)

    # -- refusals -----------------------------------------------------------------

    def _abandon(self) -> None:
        """Close a connection whose refusal could not be sent in time."""
        if self._refusal is not None:
            self._refusal = None
            self.transport.close()

    def _stop_timer(self) -> None:
        if self._overdue is not None:
            self._overdue.cancel()
            self._overdue = None

    def _request_timed_out(self) -> None:
        self._overdue = None
        if not self._receiving or self._refused or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the server stopped reading (earlier answers pending)
            self._overdue = self.loop.call_later(REQUEST_TIMEOUT, self._request_timed_out)
            return
        reason = f"the request did not arrive whole within {REQUEST_TIMEOUT:g} s"
        self._refuse(408, reason, own=not self._in_head)

    def _refuse(self, status: int, reason: str, *, own: bool) -> None:
        """Answer ``status`` with ``reason`` once the earlier answers are out and close the
        connection; ``own``: the refused request has a cycle (an app reading its body is
        told the client went away)."""
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.warning("closed the connection from %s: %s", client, reason)
        self._refused = True
        self._stop_timer()
        body = reason.encode()
        self._refusal = (
            STATUS_LINE[status]
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            + body
        )
        self._refused_own = own
        self._send_refusal_when_due()

    def _send_refusal_when_due(self) -> None:
        cycle = self.cycle
        if self.transport.is_closing():
            return
        if self.pipeline:
            return  # earlier requests are still to be answered
        if self._refused_own and cycle is not None and cycle.response_started:
            # The refused request's own app answers while reading its body, which will
            # not come: no second answer; the connection goes once its answer is out, or
            # after a while without it.
            if cycle.response_complete:
                self._refusal = None
                self._linger()
            else:
                self.loop.call_later(LINGER, self._abandon)
            return
        if cycle is not None and not cycle.response_complete:
            if not self._refused_own:
                return  # an earlier request's answer is under way: the refusal follows
            cycle.disconnected = True  # the refused request's own app stops reading
            cycle.message_event.set()
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            self.transport.write(refusal)
            self._linger()

    def _linger(self) -> None:
        # Closing with the client's bytes unread would reset the connection, and the
        # client might never read the answer: what comes meanwhile is dropped.
        self.flow.resume_reading()
        self.loop.call_later(LINGER, self.transport.close)
