"""A real HTTP server on a free loopback port, for the receivers and platforms tests talk to."""

from __future__ import annotations

import http.server
import ssl
import threading

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """``handler`` served on 127.0.0.1 from a thread of its own (each request on one more),
    until :meth:`close`; ``tls`` serves HTTPS."""

    def __init__(
        self,
        handler: type[http.server.BaseHTTPRequestHandler],
        server_class: type[http.server.ThreadingHTTPServer] = http.server.ThreadingHTTPServer,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.server = server_class(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close every socket."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
