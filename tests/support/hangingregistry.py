"""A "registry" that accepts connections and never answers: the hostile case for image pulls.

Tests and the benchmark pull `<address>/name:tag` from it. Docker treats 127.0.0.0/8 as an insecure
registry by default, so the engine tries plain HTTP there and simply waits (about 25 s, its own timeout)
for an answer that never comes. Nothing leaves the loopback interface.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


class HangingRegistry:
    """Listens on 127.0.0.1 (an ephemeral port), accepts every connection, reads nothing, writes nothing."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._held: list[socket.socket] = []
        self.accepted = 0
        self._thread = threading.Thread(target=self._accept, name="hanging-registry", daemon=True)
        self._thread.start()

    def image(self, name: str = "hang", tag: str = "1") -> str:
        """An image reference on this registry."""
        return f"{self.address}/{name}:{tag}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            with self._lock:
                self._held.append(conn)
                self.accepted += 1

    def close(self) -> None:
        """Stop listening and drop every held connection (the engine's pulls then fail at once)."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._listener.close()
        with self._lock:
            held, self._held = self._held, []
        for conn in held:
            conn.close()
        self._thread.join(5)

    def __enter__(self) -> HangingRegistry:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
