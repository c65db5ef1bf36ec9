"""Answers leave in one write: :mod:`jobhooks.api.protocol` under a real uvicorn server on
loopback, with raw HTTP/1.1 clients."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jobhooks.api.protocol import JOIN_UP_TO, CoalescingTransport, OneWriteProtocol

Message = dict[str, Any]


async def app(scope: Message, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
    """Echoes a POST's body; ``GET /big`` streams three chunks of 40 KiB; ``/busy`` blocks
    the event loop between the answer's head and its body."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/busy":
        # The answer's head, then the event loop is busy a while (other requests' work).
        await send({"type": "http.response.start", "status": 200, "headers": []})
        time.sleep(0.3)
        await send({"type": "http.response.body", "body": b"hello"})
        return
    if scope["path"] == "/big":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for number in range(3):
            chunk = bytes([65 + number]) * 40_000
            await send({"type": "http.response.body", "body": chunk, "more_body": number < 2})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Recorder:
    """Sits between a protocol and the socket's transport, counting writes to the socket."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def recording(protocol: type[HttpToolsProtocol], writes: list[bytes]) -> type[HttpToolsProtocol]:
    class Recording(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(Recorder(transport, writes))

    return Recording


async def exchange(
    protocol: type[HttpToolsProtocol], request: bytes, *, half_close_after: float | None = None
) -> bytes:
    """Serve ``app`` with ``protocol`` on loopback, send ``request`` raw (from a thread, with
    a blocking socket: the app may block the event loop) and read until the server closes
    the connection. ``half_close_after``: the client then shuts its side down after that
    many seconds, as a client with nothing more to send does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = uvicorn.Config(app, http=protocol, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[listener]))

    def client() -> bytes:
        with socket.create_connection(listener.getsockname(), timeout=10) as sock:
            sock.sendall(request)
            if half_close_after is not None:
                time.sleep(half_close_after)
                sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            return answer

    try:
        while not server.started:
            await asyncio.sleep(0.01)
        return await asyncio.to_thread(client)
    finally:
        server.should_exit = True
        await serving
        listener.close()


def post(body: bytes, *, close: bool = False) -> bytes:
    head = (
        b"POST /api/v1/job-completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % len(body)
    )
    return head + (b"Connection: close\r\n" if close else b"") + b"\r\n" + body


def test_an_answer_reaches_the_socket_in_one_write() -> None:
    writes: list[bytes] = []
    answer = asyncio.run(exchange(recording(OneWriteProtocol, writes), post(b"{}", close=True)))
    assert answer.startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert answer.endswith(b"\r\n\r\n{}")
    assert writes == [answer], "status line, headers and body in one send"

    # uvicorn's own protocol writes the head and the body apart: what this protocol saves.
    plain: list[bytes] = []
    asyncio.run(exchange(recording(HttpToolsProtocol, plain), post(b"{}", close=True)))
    assert len(plain) == 2


def test_pipelined_requests_are_answered_in_order_and_complete() -> None:
    requests = post(b'{"n":1}') + post(b'{"n":22}') + post(b'{"n":333}', close=True)
    writes: list[bytes] = []
    answer = asyncio.run(exchange(recording(OneWriteProtocol, writes), requests))
    assert answer.count(b"HTTP/1.1 202 Accepted") == 3
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in answer.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b'{"n":1}', b'{"n":22}', b'{"n":333}']
    assert b"".join(writes) == answer


@pytest.mark.parametrize("protocol", [HttpToolsProtocol, OneWriteProtocol])
def test_a_client_that_half_closes_still_gets_the_answer_under_uvloop(
    protocol: type[HttpToolsProtocol],
) -> None:
    # uvloop reads the client's EOF before the end of the turn where a held write goes
    # out, and closes the connection when the protocol does not keep it open.
    request = b"HEAD /busy HTTP/1.1\r\nHost: t\r\n\r\n"
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        answer = runner.run(exchange(protocol, request, half_close_after=0.1))
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n")


def test_a_streamed_answer_arrives_whole_and_is_not_held_back() -> None:
    request = b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    writes: list[bytes] = []
    answer = asyncio.run(exchange(recording(OneWriteProtocol, writes), request))
    head, _, chunked = answer.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    for letter in b"ABC":
        assert bytes([letter]) * 40_000 in chunked
    assert chunked.endswith(b"0\r\n\r\n")
    assert b"".join(writes) == answer
    assert len(writes) == 2, "head and first chunk, then the other two: never all held"


class _Sink:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = self.eof = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def _after_the_turn(steps: Callable[[CoalescingTransport, _Sink], None]) -> _Sink:
    """Run ``steps`` on a coalescing transport over a sink within one turn of an event
    loop, then let the turn end; returns the sink."""

    async def scenario() -> _Sink:
        sink = _Sink()
        steps(CoalescingTransport(sink, asyncio.get_running_loop()), sink)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        return sink

    return asyncio.run(scenario())


@pytest.mark.parametrize("ending", ["close", "write_eof"])
def test_what_is_held_is_sent_before_the_connection_ends(ending: str) -> None:
    def steps(transport: CoalescingTransport, sink: _Sink) -> None:
        transport.write(bytearray(b"HTTP/1.1 100 Continue\r\n\r\n"))
        assert sink.writes == []
        getattr(transport, ending)()

    sink = _after_the_turn(steps)  # the turn ends: nothing is written twice
    assert sink.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert sink.closed or sink.eof


def test_a_write_nothing_follows_is_sent_when_the_turn_ends() -> None:
    during: list[bytes] = []

    def steps(transport: CoalescingTransport, sink: _Sink) -> None:
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        during.extend(sink.writes)

    sink = _after_the_turn(steps)
    assert during == []
    assert sink.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_an_abort_drops_what_is_held_and_everything_else_reaches_the_transport() -> None:
    def steps(transport: CoalescingTransport, _sink: _Sink) -> None:
        assert transport.get_extra_info("peername") == "info:peername"
        transport.write(b"head")
        transport.abort()

    sink = _after_the_turn(steps)
    assert sink.aborted
    assert sink.writes == []


def test_a_large_write_follows_the_held_one_rather_than_being_copied_onto_it() -> None:
    def steps(transport: CoalescingTransport, _sink: _Sink) -> None:
        transport.write(b"head")
        transport.write(b"x" * (JOIN_UP_TO + 1))
        transport.write(b"small head")
        transport.write(memoryview(b"small body"))

    sink = _after_the_turn(steps)
    assert [len(w) for w in sink.writes] == [4, JOIN_UP_TO + 1, 20]
    assert sink.writes[2] == b"small headsmall body"
