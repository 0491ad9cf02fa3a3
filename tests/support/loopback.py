"""Real HTTP servers on 127.0.0.1 for tests.

Test stand-ins serve over real sockets, so clients exercise their own HTTP,
retry and keep-alive code paths. Each server remembers its open connections,
so stop() can close them and stale keep-alive clients fail fast instead of
hanging on a server that is gone.

Stdlib only. A stand-in subclasses ``LoopbackServer`` and sets its
``handler_class`` (a ``TrackingHandler`` subclass) and ``thread_name``; its
handler reaches the stand-in as ``self.server.fake``.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["LoopbackServer", "TrackingHandler", "TrackingServer"]


class TrackingServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that remembers open connections, so stop() can close them."""

    daemon_threads = True        # a hung client never blocks interpreter exit
    request_queue_size = 128     # listen() backlog; override for bursts of new connections

    def __init__(self, address, handler, fake: Any):
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        """Clients hanging up (cancelled calls, stop()) are normal here: no traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def close_open_sockets(self) -> None:
        """Shut down every connection still open, so its client sees the server is gone."""
        with self.sockets_lock:
            for sock in list(self.open_sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class TrackingHandler(BaseHTTPRequestHandler):
    """Request handler that registers its connection with the server while it is open."""

    server: TrackingServer

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        super().finish()


class LoopbackServer:
    """Start/stop lifecycle of a stand-in served from a background thread.

    Subclasses set ``handler_class``, ``thread_name`` (the thread is named
    ``{thread_name}-{port}``) and, if they need a bigger backlog or other
    server tweaks, ``server_class``.
    """

    server_class: type[TrackingServer] = TrackingServer
    handler_class: type[TrackingHandler] = TrackingHandler
    thread_name = "loopback"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port   # 0: pick a free port on start()
        self._httpd: TrackingServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._httpd = self.server_class((self.host, self.port), self.handler_class, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.thread_name}-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close pooled keep-alive connections, so stale clients fail fast."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        httpd.close_open_sockets()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
