"""SIGTERM and SIGINT end a run the same clean way: stop after the current frame, close the
video (so it plays), write the summary.

``docker stop`` and systemd send SIGTERM, whose default action kills the process before any
``finally`` runs (an MP4 without its index, no ``--json``). While a :class:`StopOnSignal` is
active both signals only set a flag that the frame loop checks; a second signal while stopping
raises KeyboardInterrupt, so a stuck run can still be interrupted.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignal:
    """Context manager; ``requested`` (an Event) is set by the first SIGTERM/SIGINT, ``signal_name``
    says which. Outside the main thread (where Python cannot install handlers) it does nothing."""

    def __init__(self):
        self.requested = threading.Event()
        self.signal_name: str | None = None
        self._previous: dict = {}

    def is_set(self) -> bool:
        return self.requested.is_set()

    def _handle(self, signum, frame):
        if self.requested.is_set():
            raise KeyboardInterrupt  # a second signal: the user really means now
        self.signal_name = signal.Signals(signum).name
        self.requested.set()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
