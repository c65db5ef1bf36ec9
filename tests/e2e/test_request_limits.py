"""Bodies of any size, sent in chunks with no length to trust: a real server reads up to
its limit and no further, whatever the endpoint."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.server import StartServer, write_config

SENT = 48 * 1024 * 1024
CHUNK = 64 * 1024


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def _send_chunked(port: int, path: str) -> bytes:
    """POST ``SENT`` bytes in chunks (Transfer-Encoding: chunked); returns the answer's start."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode()
        )
        chunk = f"{CHUNK:x}\r\n".encode() + b"t" * CHUNK + b"\r\n"
        try:
            for _ in range(SENT // CHUNK):
                connection.sendall(chunk)
            connection.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: the rest is not wanted
        return connection.recv(200)


@pytest.mark.parametrize("path", ["/ui/login", "/api/v1/admin/reload", "/ui/logout"])
def test_a_huge_chunked_body_is_refused_without_being_read(
    tmp_path: Path, start_server: StartServer, path: str
) -> None:
    server = start_server(write_config(tmp_path, ""))
    before = _rss_mb(server.pid)

    answer = _send_chunked(server.port, path)

    assert answer.startswith(b"HTTP/1.1 413"), answer
    grown = _rss_mb(server.pid) - before
    assert grown < 16, f"the server grew by {grown:.0f} MB reading a body it refuses"
