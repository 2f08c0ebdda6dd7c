"""Capture in its own thread, behind a bounded queue with an explicit drop policy.

Live sources drop the *oldest* queued frame when the consumer falls behind, so latency
stays bounded; files block instead, so no frame is lost.
"""

from __future__ import annotations

import queue
import threading

_END = object()


class CaptureThread:
    def __init__(self, source, maxsize: int = 4, drop: str = "auto"):
        if drop == "auto":
            drop = "oldest" if getattr(source, "is_live", False) else "block"
        if drop not in ("oldest", "block"):
            raise ValueError(f"drop policy must be 'oldest', 'block' or 'auto', not {drop!r}")
        self.source, self.drop = source, drop
        self.queue: queue.Queue = queue.Queue(maxsize)
        self.captured = self.dropped = 0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="passrt-capture", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for frame in self.source:
                if self._stop.is_set():
                    break
                self.captured += 1
                self._put(frame)
        except BaseException as e:  # handed to the consumer, never swallowed
            self._error = e
        finally:
            self._put(_END, force=True)

    def _put(self, item, force: bool = False):
        """Queue ``item``. Live sources drop the oldest frame when full; files wait for room.

        The end marker (``force``) waits for room like a frame, so it never pushes the last
        frames of a file out; only after ``stop()`` (nobody is reading) does it make room.
        """
        while True:
            if self.drop == "oldest" and item is not _END and self.queue.full():
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set():
                    if not force:
                        return
                    try:
                        self.queue.get_nowait()  # the consumer is gone: make room for the marker
                    except queue.Empty:
                        pass

    def __iter__(self):
        return self.frames()

    def frames(self, until=None):
        """The captured frames; with ``until`` (a callable), also stop as soon as it returns True,
        checked every 0.1 s even while no frame arrives (a stream that went quiet must not keep a
        SIGTERM waiting)."""
        while True:
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                if until is not None and until():
                    return
                continue
            if until is not None and until():
                return
            if item is _END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop capturing; True when the thread ended (a camera stuck in read() may not)."""
        self._stop.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()
