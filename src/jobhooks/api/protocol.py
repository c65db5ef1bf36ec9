"""The HTTP protocol ``serve`` speaks: uvicorn's (httptools), each answer sent in one write.

An ASGI app answers in two messages, the status line and headers, then the body,
and uvicorn writes each to the socket as it comes: two ``send`` system calls and,
on a loopback or a LAN, two segments the client wakes up for. An orchestrator's
check-in is a few hundred bytes each way, so the second write is a good part of
what answering costs. :class:`OneWriteProtocol` holds a write until the next one
(an answer's body follows its head at once) and sends the two together; a write
nothing follows in the same turn of the event loop is sent at the end of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["JOIN_UP_TO", "CoalescingTransport", "OneWriteProtocol"]

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


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`CoalescingTransport`."""

    _coalescing: CoalescingTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._coalescing = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        coalescing: Any = self._coalescing
        super().connection_made(coalescing)

    def eof_received(self) -> None:
        # The client sent all it will send, and the event loop closes the connection once
        # this returns: what is held goes out first (uvloop reads the EOF before the turn's
        # end, where a held write would otherwise have been sent).
        self._coalescing.flush()
        super().eof_received()
