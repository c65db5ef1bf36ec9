"""A network that vanishes under an open connection, as when the database's host is
powered off or fails over to another machine: nothing answers, not even a reset.

The store runs in a child process inside a network namespace of its own, reaching the
database through a relay on that namespace's loopback; taking the loopback down then
drops every packet on the store's connections, and nothing outside the child is
touched. Namespaces are Linux's; without root the child makes a user namespace too.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["Relay", "enter_private_network", "set_loopback"]

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def enter_private_network() -> None:
    """Move this process (single-threaded still) into a network namespace of its own,
    whose loopback is then brought up."""
    flags = _CLONE_NEWNET if os.geteuid() == 0 else _CLONE_NEWNET | _CLONE_NEWUSER
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), "cannot make a network namespace")
    set_loopback(up=True)


def set_loopback(*, up: bool) -> None:
    """Bring this namespace's loopback interface up or down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
        request = struct.pack("16sh", b"lo", 0)
        current = struct.unpack("16sh", fcntl.ioctl(control, _SIOCGIFFLAGS, request))[1]
        wanted = current | _IFF_UP if up else current & ~_IFF_UP
        fcntl.ioctl(control, _SIOCSIFFLAGS, struct.pack("16sh", b"lo", wanted))


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


class Relay:
    """Passes each connection made to ``listener`` on to a connection ``dial`` makes, byte
    for byte, both ways (a Unix socket crosses network namespaces, TCP does not)."""

    def __init__(self, listener: socket.socket, dial: Callable[[], socket.socket]) -> None:
        self.listener = listener
        self._dial = dial
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @classmethod
    def unix_to_tcp(cls, path: Path, host: str, port: int) -> Relay:
        """Listen on the Unix socket ``path``; pass on to ``host:port`` over TCP."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.listen(64)
        return cls(listener, lambda: socket.create_connection((host, port), timeout=5))

    @classmethod
    def tcp_to_unix(cls, path: Path) -> Relay:
        """Listen on TCP on this namespace's loopback; pass on to the Unix socket ``path``."""

        def dial() -> socket.socket:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.connect(str(path))
            return connection

        return cls(socket.create_server(("127.0.0.1", 0)), dial)

    @property
    def port(self) -> int:
        """The TCP port it listens on."""
        return int(self.listener.getsockname()[1])

    def _accept(self) -> None:
        while True:
            try:
                client, _address = self.listener.accept()
                server = self._dial()
            except OSError:
                return
            server.settimeout(None)
            self._open += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()

    def close(self) -> None:
        """Stop listening and close every connection it relays."""
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for connection in self._open:
            with contextlib.suppress(OSError):
                connection.close()
