"""Answers leave in one write: :mod:`jobhooks.api.protocol` under a real uvicorn server on
loopback, with raw HTTP/1.1 clients."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jobhooks.api import protocol as protocol_module
from jobhooks.api.protocol import (
    HEAD_LIMIT,
    JOIN_UP_TO,
    CoalescingTransport,
    OneWriteProtocol,
)

Message = dict[str, Any]
T = TypeVar("T")


async def app(scope: Message, receive: Callable[[], Awaitable[Message]], send: Any) -> None:
    """Echoes a POST's body; ``GET /big`` streams three chunks of 40 KiB; ``/busy`` blocks
    the event loop between the answer's head and its body; ``/slow?S`` answers after S
    seconds (0.3 by default); ``/stream`` answers each piece of the body as it comes."""
    if scope["type"] != "http":
        return
    if scope["path"] == "/busy":
        # The answer's head, then the event loop is busy a while (other requests' work).
        await send({"type": "http.response.start", "status": 200, "headers": []})
        time.sleep(0.3)
        await send({"type": "http.response.body", "body": b"hello"})
        return
    if scope["path"] == "/slow":  # answers after a while, without blocking the loop
        await asyncio.sleep(float(scope["query_string"] or b"0.3"))
        headers = [(b"content-length", b"4")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"slow"})
        return
    if scope["path"] == "/stream":  # answers each piece of the body as it comes
        await send({"type": "http.response.start", "status": 200, "headers": []})
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            more = message.get("more_body", False)
            await send({"type": "http.response.body", "body": message["body"], "more_body": more})
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


async def serving(
    protocol: type[HttpToolsProtocol],
    client: Callable[[tuple[str, int]], T],
    *,
    timeout_keep_alive: float = 5,
) -> T:
    """Serve ``app`` with ``protocol`` on loopback and run ``client(address)`` in a thread
    (with blocking sockets: the app may block the event loop); its result."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = uvicorn.Config(
        app,
        http=protocol,
        lifespan="off",
        log_config=None,
        timeout_keep_alive=int(timeout_keep_alive) or 1,
    )
    config.timeout_keep_alive = timeout_keep_alive  # type: ignore[assignment]
    server = uvicorn.Server(config)
    serving_task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        return await asyncio.to_thread(client, listener.getsockname())
    finally:
        server.should_exit = True
        await serving_task
        listener.close()


def read_all(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def timed_client(
    request: bytes, *, trickle: bool = False
) -> Callable[[tuple[str, int]], tuple[bytes, float]]:
    """A client that sends ``request`` (then, with ``trickle``, one more byte every 50 ms
    for 2 s) and reads until the server closes: what it read, and after how long."""

    def client(address: tuple[str, int]) -> tuple[bytes, float]:
        with socket.create_connection(address, timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(request)
            if trickle:
                with contextlib.suppress(OSError):
                    for _ in range(40):
                        time.sleep(0.05)
                        sock.send(b"a")
            return read_all(sock), time.monotonic() - started

    return client


async def exchange(
    protocol: type[HttpToolsProtocol], request: bytes, *, half_close_after: float | None = None
) -> bytes:
    """Send ``request`` raw to ``app`` served with ``protocol`` and read until the server
    closes the connection. ``half_close_after``: the client then shuts its side down after
    that many seconds, as a client with nothing more to send does."""

    def client(address: tuple[str, int]) -> bytes:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(request)
            if half_close_after is not None:
                time.sleep(half_close_after)
                sock.shutdown(socket.SHUT_WR)
            return read_all(sock)

    return await serving(protocol, client)


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


def test_a_head_over_the_limit_is_answered_431_before_much_more_is_read() -> None:
    """A client sending headers for ever: the server stops reading a little past the
    limit, rather than keeping every header it is sent."""
    received: list[int] = []

    class Counting(OneWriteProtocol):
        def data_received(self, data: bytes) -> None:
            if not self._refused:  # what comes after the refusal is read and dropped
                received.append(len(data))
            super().data_received(data)

    def client(address: tuple[str, int]) -> bytes:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")
            line = b"X-Filler: " + b"a" * 90 + b"\r\n"
            with contextlib.suppress(OSError):  # reset: the server closed with data unread
                for _ in range(10_000):  # 10 MB at most
                    sock.sendall(line * 10)
            return read_all(sock)

    answer = asyncio.run(serving(Counting, client))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:80]
    assert answer.endswith(b"the request's line, headers and trailers are over 65536 bytes")
    assert sum(received) <= HEAD_LIMIT + max(received), f"{sum(received)} bytes read"


def test_a_large_head_under_the_limit_and_a_body_in_the_same_read_are_served() -> None:
    token = b"Bearer " + b"k" * 40_000  # a large Kerberos or bearer token
    request = post(b'{"n":1}').replace(
        b"Host: t\r\n", b"Host: t\r\nAuthorization: " + token + b"\r\n"
    )
    requests = request + post(b"x" * 60_000, close=True)
    answer = asyncio.run(exchange(OneWriteProtocol, requests))
    assert answer.count(b"HTTP/1.1 202 Accepted") == 2


@pytest.mark.parametrize(
    ("what", "request_start"),
    [
        ("half a head", b"POST /api/v1/job-completions HTTP/1.1\r\nHost: t\r\nContent-Le"),
        ("a body promised, not sent", post(b"{}").replace(b"{}", b"")),
        ("a head trickled byte by byte", b"GET / HTTP/1.1\r\nX-Slow: "),
    ],
)
def test_a_request_not_received_whole_in_time_is_answered_408(
    what: str, request_start: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protocol_module, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(protocol_module, "LINGER", 0.2)

    client = timed_client(request_start, trickle=what == "a head trickled byte by byte")
    answer, took = asyncio.run(serving(OneWriteProtocol, client))
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), (what, answer[:80])
    assert answer.endswith(b"the request did not arrive whole within 0.5 s")
    assert 0.4 <= took < 2.5, took


def test_a_request_sent_in_pieces_within_the_time_is_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol_module, "REQUEST_TIMEOUT", 1.0)
    request = post(b'{"n":1}', close=True)

    def client(address: tuple[str, int]) -> bytes:
        with socket.create_connection(address, timeout=10) as sock:
            for piece in (request[:20], request[20:60], request[60:]):
                sock.sendall(piece)
                time.sleep(0.2)
            return read_all(sock)

    answer = asyncio.run(serving(OneWriteProtocol, client))
    assert answer.startswith(b"HTTP/1.1 202 Accepted\r\n")


def test_a_connection_that_sends_nothing_is_closed_after_the_keep_alive_timeout() -> None:
    def client(address: tuple[str, int]) -> tuple[bytes, float]:
        with socket.create_connection(address, timeout=10) as sock:
            started = time.monotonic()
            return read_all(sock), time.monotonic() - started

    answer, took = asyncio.run(serving(OneWriteProtocol, client, timeout_keep_alive=0.3))
    assert answer == b""
    assert took < 2, took


TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\n"


def _answers(raw: bytes) -> list[bytes]:
    """The status lines of the answers in ``raw``, in order."""
    return re.findall(rb"HTTP/1\.1 \d{3} [^\r]*", raw)


def test_a_head_over_the_limit_received_in_one_read_is_refused_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol_module, "LINGER", 0.2)
    filler = b"".join(b"X-F%d: %s\r\n" % (n, b"a" * 1000) for n in range(100))
    request = b"GET / HTTP/1.1\r\nHost: t\r\n" + filler + b"Connection: close\r\n\r\n"
    answer = asyncio.run(exchange(OneWriteProtocol, request))
    assert answer.startswith(TOO_LARGE), answer[:80]


def test_trailers_over_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol_module, "LINGER", 0.2)
    trailers = b"".join(b"X-T%d: %s\r\n" % (n, b"a" * 1000) for n in range(100))
    request = (
        b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n" + trailers + b"\r\n"
    )
    answer = asyncio.run(exchange(OneWriteProtocol, request))
    assert _answers(answer) == [TOO_LARGE.strip()], answer[:200]


def test_a_refused_request_is_answered_after_the_requests_before_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pipelined: a slow request, then one whose head goes over the limit. The slow one's
    answer (its check-in may well have been stored) comes first, then the refusal."""
    monkeypatch.setattr(protocol_module, "LINGER", 0.2)
    slow = b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"

    def client(address: tuple[str, int]) -> bytes:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(slow + b"GET / HTTP/1.1\r\nHost: t\r\nX-F: ")
            time.sleep(0.05)
            sock.sendall(b"a" * 70_000)  # a header that never ends
            return read_all(sock)

    answer = asyncio.run(serving(OneWriteProtocol, client))
    assert _answers(answer) == [b"HTTP/1.1 200 OK", TOO_LARGE.strip()], answer[:300]
    assert b"\r\n\r\nslow" in answer


@pytest.mark.parametrize(
    ("case", "first_takes", "sent_first", "rest_after", "timeout", "keep_alive"),
    [
        # Pipelined behind an answer that takes longer than the timeout: the server stops
        # reading meanwhile, so the second request's wait is not the client's doing.
        ("held back past the timeout", 1.2, -3, 0.2, 0.4, 5.0),
        # Behind an answer that took most of the timeout, the next request has the whole
        # timeout again from when the server reads it (1.6 s after it began, 0.6 after).
        ("held back, then slow", 1.0, -3, 1.6, 1.2, 5.0),
        # Its head begun behind an answer: uvicorn's keep-alive timer, armed by that
        # answer, does not cut it; its own timeout does.
        ("begun behind an answer", 0.0, 30, 0.8, 30.0, 0.3),
    ],
)
def test_a_request_pipelined_behind_another_is_timed_from_when_the_server_reads_it(
    case: str,
    first_takes: float,
    sent_first: int,
    rest_after: float,
    timeout: float,
    keep_alive: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol_module, "REQUEST_TIMEOUT", timeout)
    second = post(b'{"n":1}', close=True)

    def client(address: tuple[str, int]) -> bytes:
        with socket.create_connection(address, timeout=10) as sock:
            first = b"GET /slow?%g HTTP/1.1\r\nHost: t\r\n\r\n" % first_takes
            sock.sendall(first + second[:sent_first])
            time.sleep(rest_after)
            sock.sendall(second[sent_first:])
            return read_all(sock)

    answer = asyncio.run(serving(OneWriteProtocol, client, timeout_keep_alive=keep_alive))
    assert _answers(answer) == [b"HTTP/1.1 200 OK", b"HTTP/1.1 202 Accepted"], (case, answer)


def test_a_refused_request_whose_app_answers_as_it_reads_does_not_hold_the_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(protocol_module, "REQUEST_TIMEOUT", 0.3)
    monkeypatch.setattr(protocol_module, "LINGER", 0.2)

    client = timed_client(
        b"POST /stream HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n"  # and the rest never comes
    )
    answer, took = asyncio.run(serving(OneWriteProtocol, client))
    assert _answers(answer) == [b"HTTP/1.1 200 OK"], answer[:200]  # no second answer
    assert took < 3, f"held for {took:.1f} s"
