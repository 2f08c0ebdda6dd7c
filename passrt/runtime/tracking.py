"""Multi-object tracking of the detections, with Roboflow's ``trackers`` (Apache-2.0).

``trackers`` rather than our own: ByteTrack's two-stage association and Kalman filter are
kept and tested there. It is an optional extra (``pip install 'passrt[track]'``), imported only
when tracking runs.

OpenCV: ``trackers`` declares ``opencv-python`` (the GUI build); passrt depends on
``opencv-python-headless``. Both wheels install the same ``cv2`` package, and having both breaks
it (whichever is uninstalled first deletes the other's files). The tracker passrt uses
(ByteTrack) never calls OpenCV; so the ``track`` extra lists what ``trackers`` needs except
OpenCV, and ``trackers`` itself is installed without its dependencies (the Makefile does;
see README). A window (``passrt run`` without ``--headless``) needs a GUI build of OpenCV
either way: JetPack's (which also has GStreamer for ``csi://``) or ``opencv-python``
installed *instead of* the headless wheel.
"""

from __future__ import annotations

import numpy as np

from passrt.errors import PassrtError

TRACKERS = ("bytetrack", "ocsort", "sort")


class Tracker:
    """``update(boxes, scores)`` per frame -> (ids, boxes, scores) of the confirmed tracks.

    Thresholds suit passrt's detectors, whose person scores sit lower than ByteTrack's defaults
    assume (0.7 to start a track): a track starts at 0.5, the second, low-score association
    stage takes what the display threshold lets through.
    """

    def __init__(self, name: str = "bytetrack", frame_rate: float = 30.0, start_score: float = 0.5):
        if name not in TRACKERS:
            raise PassrtError(f"unknown tracker '{name}' (known: {', '.join(TRACKERS)})")
        try:
            import supervision as sv
            import trackers
        except ImportError as e:
            raise PassrtError(f"--track needs the tracking extra ({e.name} is missing): "
                              "make install, or pip install --no-deps trackers && pip install 'passrt[track]'") from None
        self.name, self._sv = name, sv
        rate = float(frame_rate) if frame_rate and frame_rate > 0 else 30.0
        if name == "bytetrack":
            self._impl = trackers.ByteTrackTracker(frame_rate=rate, track_activation_threshold=start_score,
                                                   high_conf_det_threshold=start_score)
        elif name == "ocsort":
            self._impl = trackers.OCSORTTracker(frame_rate=rate)
        else:
            self._impl = trackers.SORTTracker(frame_rate=rate, track_activation_threshold=start_score)

    def update(self, boxes, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        detections = self._sv.Detections(xyxy=boxes, confidence=scores, class_id=np.zeros(len(boxes), int))
        out = self._impl.update(detections)
        keep = np.asarray(out.tracker_id) >= 0  # -1: not confirmed yet (minimum_consecutive_frames)
        conf = out.confidence if out.confidence is not None else np.ones(len(out))
        # IDs from 1, as MOTChallenge files number them (trackers counts from 0)
        return np.asarray(out.tracker_id)[keep].astype(int) + 1, out.xyxy[keep], np.asarray(conf)[keep]


def track_sequence(name: str, detections: list, frame_rate: float = 30.0) -> dict:
    """Run a fresh tracker over per-frame (boxes x1-y1-x2-y2, scores); returns frame (1-based) ->
    (ids, boxes x-y-w-h), as :func:`passrt.runtime.mot.read_mot` does."""
    tracker, out = Tracker(name, frame_rate), {}
    for frame, (boxes, scores) in enumerate(detections):
        ids, tracked, _ = tracker.update(boxes, scores)
        xywh = np.asarray(tracked, np.float64).reshape(-1, 4).copy()
        xywh[:, 2:] -= xywh[:, :2]
        out[frame + 1] = (ids, xywh)
    return out
