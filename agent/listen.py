"""The agent's own HTTP servers (the ``http`` input, the metrics endpoint): started on a socket that
answers at once, and stopped without waiting on idle keep-alive connections.

- **No Nagle delay.** gevent's ``pywsgi`` writes a response's headers and its body in separate sends.
  With Nagle's algorithm on (the default for a listening socket), the body then waits for the
  client's delayed ACK of the headers, ~40 ms on Linux, on every request of a keep-alive connection:
  a hushd sink posting its records one request at a time could deliver ~22 a second. Servers built
  for this traffic turn it off (Elasticsearch's ``network.tcp.no_delay`` defaults to true); accepted
  connections inherit ``TCP_NODELAY`` from the listening socket.
- **A stop that does not wait for idle clients.** ``WSGIServer.stop(timeout)`` waits for every
  connection's handler, and a keep-alive connection's handler waits for the client's next request:
  a sink or a scraper that keeps its connection open held every shutdown for the whole timeout.
  ``AgentWSGIServer.stop_gracefully`` closes the connections waiting for a request at once; a
  request in progress finishes (the spool commit behind its answer included), then its connection.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from gevent import pywsgi


class _GracefulHandler(pywsgi.WSGIHandler):
    """Marks its connection idle while it waits for the next request line, takes no further
    request once its server is stopping, and answers HEAD without a body."""

    server: AgentWSGIServer

    def process_result(self) -> None:
        """pywsgi sends whatever the application returns, HEAD or not; an answer to HEAD has no
        content (RFC 9110 §9.3.2), and a client reads none: on a keep-alive connection the body's
        bytes would be taken as the start of the next answer. The headers (Content-Length
        included) are those a GET gets."""
        if self.command != "HEAD":
            super().process_result()
            return
        for _ in self.result:
            pass
        if self.status and not self.headers_sent:
            self.write(b"")

    def read_requestline(self) -> str:
        server = self.server
        if server.stopping:
            return ""  # ends the connection (pywsgi closes it on an empty request line)
        server.idle_handlers.add(self)
        try:
            return super().read_requestline()
        finally:
            server.idle_handlers.discard(self)


class AgentWSGIServer(pywsgi.WSGIServer):
    """``pywsgi.WSGIServer`` listening with ``TCP_NODELAY``, stopped by ``stop_gracefully``."""

    handler_class = _GracefulHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = False
        self.idle_handlers: set[_GracefulHandler] = set()

    def init_socket(self) -> None:
        super().init_socket()
        if self.socket.family in (socket.AF_INET, socket.AF_INET6):  # accepted sockets inherit it
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def stop_gracefully(self, timeout: float) -> None:
        """Stop accepting, close the connections waiting for a request, and give requests in
        progress up to ``timeout`` to finish."""
        self.stopping = True
        for handler in list(self.idle_handlers):
            with contextlib.suppress(OSError):
                handler.socket.shutdown(socket.SHUT_RD)  # its read returns end-of-file at once
        self.stop(timeout=timeout)
