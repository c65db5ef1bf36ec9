"""The listening socket of ``serve``: bound before anything says it is serving."""

from __future__ import annotations

import errno
import socket

from jobhooks.cli.app import fail

__all__ = ["bind_listener", "split_listen"]

_BACKLOG = 2048


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as host and port, or exit 1 saying why."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        fail(f"--listen: expected HOST:PORT such as 127.0.0.1:8080, got {listen!r}")
    return host.strip("[]"), int(port)


def _another(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port + 1 if 0 < port < 65535 else 8081}"


def bind_listener(listen: str) -> socket.socket:
    """A TCP socket bound to ``listen`` and listening, for uvicorn to serve on; or exit 1
    with what went wrong, naming the address and how to choose another."""
    host, port = split_listen(listen)
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        fail(f"cannot listen on {listen}: the host {host!r} cannot be resolved ({exc.strerror})")
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(_BACKLOG)
    except OSError as exc:
        listener.close()
        choose = (
            f"choose another with --listen {_another(host, port)} (or [server] listen in the "
            "configuration)"
        )
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"cannot listen on {listen}: port {port} is already in use (another jobhooks "
                f"serve or jobhooks demo?); stop what holds it, or {choose}"
            )
        if exc.errno == errno.EACCES:
            fail(f"cannot listen on {listen}: port {port} needs privileges; {choose}")
        if exc.errno == errno.EADDRNOTAVAIL:
            fail(f"cannot listen on {listen}: {host} is not an address of this machine; {choose}")
        fail(f"cannot listen on {listen}: {exc.strerror or exc}; {choose}")
    return listener
