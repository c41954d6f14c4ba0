"""A loopback HTTP MJPEG camera for tests: multipart/x-mixed-replace on 127.0.0.1, stop and restart."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Sequence

import cv2
import numpy as np


class MjpegServer:
    def __init__(self, fps: float = 50.0, size: tuple[int, int] = (160, 120), port: int = 0,
                 images: Sequence[np.ndarray] = ()) -> None:
        """Sends `images` (BGR) in turn, else flat grey frames of `size` whose level steps by 10 each frame."""
        self.fps, self.size, self.port = fps, size, port
        self.sent = 0
        self.paused = threading.Event()  # connections stay open but no frames are sent (a stall)
        images = images or [np.full((size[1], size[0], 3), level, np.uint8) for level in range(0, 250, 10)]
        self._jpegs = [cv2.imencode(".jpg", image)[1].tobytes() for image in images]
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/video.mjpg"

    def start(self) -> MjpegServer:
        running = threading.Event()
        running.set()
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler(running))
        server.daemon_threads = True
        server.running = running
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        """Close the listening socket and end every open stream."""
        server, self._server = self._server, None
        if server is not None:
            server.running.clear()
            server.shutdown()
            server.server_close()
            time.sleep(2.0 / self.fps)  # let the handlers see the flag and close their sockets

    def _handler(self, running: threading.Event) -> type[http.server.BaseHTTPRequestHandler]:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                period, due = 1.0 / camera.fps, time.monotonic()
                try:
                    while running.is_set():
                        if not camera.paused.is_set():
                            self._send(camera._jpegs[camera.sent % len(camera._jpegs)])
                            camera.sent += 1
                        due = max(due + period, time.monotonic() - period)  # a steady rate, no catching up
                        time.sleep(max(0.0, due - time.monotonic()))
                except OSError:
                    pass

            def _send(self, jpeg: bytes) -> None:
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                self.wfile.write(head + jpeg + b"\r\n")
                self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        return Handler
