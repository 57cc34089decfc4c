"""A local HTTP server for download tests: serves files from memory on 127.0.0.1 (a free port), can cut a transfer
short, and logs every request. Nothing here touches the network beyond the loopback interface."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Served:
    """What the server serves (``files``: URL path without the leading ``/`` -> bytes) and what it saw.

    ``cut[name] = (after, times)``: the next ``times`` requests for ``name`` announce the whole length but send
    only ``after`` bytes, then close the connection (a dropped transfer)."""

    def __init__(self, files: dict[str, bytes]):
        self.files = dict(files)
        self.cut: dict[str, tuple[int, int]] = {}
        self.requests: list[str] = []
        self.url = ""


@contextmanager
def serve(files: dict[str, bytes]) -> Iterator[Served]:
    served = Served(files)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # http.server's name for it
            name = self.path.lstrip("/")
            served.requests.append(name)
            data = served.files.get(name)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            after, times = served.cut.get(name, (0, 0))
            if times > 0:
                served.cut[name] = (after, times - 1)
                self.wfile.write(data[:after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


def refused_url() -> str:
    """An address on the loopback interface where nothing listens: a connection to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
