"""The HTTP protocol ``serve`` speaks: uvicorn's (httptools), each answer sent in one write.

An ASGI app answers in two messages, the status line and headers, then the body,
and uvicorn writes each to the socket as it comes: two ``send`` system calls and,
on a loopback or a LAN, two segments the client wakes up for. An orchestrator's
check-in is a few hundred bytes each way, so the second write is a good part of
what answering costs. :class:`OneWriteProtocol` holds what is written during one
turn of the event loop and sends it together at the end of that turn.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["FLUSH_AT", "CoalescingTransport", "OneWriteProtocol"]

FLUSH_AT = 64 * 1024
"""Bytes held before they are written at once (a large answer is not held back)."""


class CoalescingTransport:
    """A transport whose writes of one event loop turn reach the socket as one write.

    Everything else goes to the wrapped transport; closing it (or writing EOF) sends
    what is held first, aborting it drops what is held.
    """

    __slots__ = ("_held", "_held_bytes", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None
        self._held_bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Hold ``data`` until the end of this loop turn (or until enough is held)."""
        if self._held is None:
            self._held = [bytes(data)]
            self._held_bytes = len(data)
            self._loop.call_soon(self.flush)
        else:
            self._held.append(bytes(data))
            self._held_bytes += len(data)
        if self._held_bytes >= FLUSH_AT:
            self.flush()

    def writelines(self, chunks: Any) -> None:
        """Hold each of ``chunks`` (see :meth:`write`)."""
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Write what is held now (nothing when the connection is closing)."""
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing: Any = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(coalescing)
