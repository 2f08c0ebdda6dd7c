"""Loopback HTTP servers for source tests: a file server and an MJPEG camera that can go away.

Real sockets and FFmpeg's real HTTP client; nothing leaves 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import threading
import time

import cv2
import numpy as np


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve_directory(directory) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``directory``; returns the server (call shutdown()) and its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class MjpegCamera:
    """An IP camera's MJPEG stream (multipart/x-mixed-replace). Session k (1, 2, ...) sends
    ``frames_per_session`` frames whose grey level is 100 * k, then drops the connection; after a
    drop it answers 503 for ``down_s`` seconds, as a rebooting camera would."""

    def __init__(self, frames_per_session: int = 15, down_s: float = 1.0, fps: float = 25.0):
        self.frames_per_session, self.down_s, self.fps = frames_per_session, down_s, fps
        self.sessions, self.down_until = 0, 0.0
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if time.monotonic() < camera.down_until:
                    self.send_error(503)
                    return
                camera.sessions += 1
                level = min(100 * camera.sessions, 255)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for _ in range(camera.frames_per_session):
                        ok, jpg = cv2.imencode(".jpg", np.full((48, 64, 3), level, np.uint8))
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpg) + jpg.tobytes() + b"\r\n")
                        time.sleep(1 / camera.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                camera.down_until = time.monotonic() + camera.down_s

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
