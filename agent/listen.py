"""Starting the agent's own HTTP servers (the ``http`` input, the metrics endpoint) on a socket that
answers at once.

Why: gevent's ``pywsgi`` writes a response's headers and its body in separate sends. With Nagle's
algorithm on (the default for a listening socket), the body then waits for the client's delayed ACK
of the headers, ~40 ms on Linux, on every request of a keep-alive connection: a hushd sink posting
its records one request at a time could deliver ~22 a second. Servers built for this traffic turn it
off (Elasticsearch's ``network.tcp.no_delay`` defaults to true); accepted connections inherit
``TCP_NODELAY`` from the listening socket.
"""

from __future__ import annotations

import socket

from gevent.pywsgi import WSGIServer


def start_without_nagle(server: WSGIServer) -> None:
    """Bind ``server``'s socket, set ``TCP_NODELAY`` on it (TCP only), and start serving."""
    server.init_socket()
    if server.socket.family in (socket.AF_INET, socket.AF_INET6):
        server.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    server.start()
