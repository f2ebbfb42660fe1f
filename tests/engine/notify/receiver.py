"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 in a thread."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """What the webhook received: every JSON body, in order. Thread-safe."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def add(self, body: dict[str, Any]) -> None:
        with self._arrived:
            self.bodies.append(body)
            self._arrived.notify_all()

    def kinds(self) -> list[str]:
        with self._lock:
            return [b["kind"] for b in self.bodies]

    def wait_for(self, kinds: set[str], timeout_s: float = 60) -> list[dict[str, Any]]:
        """Block until bodies of every kind in ``kinds`` arrived (a real process posts them)."""
        with self._arrived:
            done = self._arrived.wait_for(
                lambda: kinds <= {b["kind"] for b in self.bodies}, timeout=timeout_s
            )
            assert done, f"received {[b['kind'] for b in self.bodies]}, expected {kinds}"
            return list(self.bodies)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("Content-Length", "0"))
            receiver.add(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return None

    return Handler


@contextmanager
def receiving(port: int = 0) -> Iterator[tuple[str, Receiver]]:
    """Serve a receiver on 127.0.0.1 (``port`` 0: any free one); yield its URL and it."""
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
