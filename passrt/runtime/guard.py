"""The run-time accuracy guard: every ``every`` frames the dense model also runs on the frame, and
the sparse engine is held to it.

On a checked frame the guard measures the sparse engine's agreement with the dense one (AP@0.5
of its detections, ranked down to a low score, against the dense detections at the display
threshold; :class:`~passrt.metrics.Agreement`) and the raw-output error. When the frame's
agreement is below ``target`` the sparse engine refreshes (its next frame runs dense: nothing
stale survives) and the operating point tightens: the policy's sensitivity parameter
(:meth:`~passrt.policies.base.Policy.operating_knob`, e.g. regiondrop's ``noise_multiple``) is
multiplied by ``TIGHTEN``, down to ``FLOOR`` times its starting value. After ``RELAX_AFTER``
checks in a row at or above the target it relaxes by ``RELAX``, never above its starting value.

The dense run happens in the same thread, in the frame's time: on the 2-4 cores of a CPU or
a Jetson a background thread would take the same cores from the sparse engine, so the cost
is paid where it is counted (the FPS the pipeline reports includes it: about
``dense time / every`` per frame).
"""

from __future__ import annotations

from collections import deque

from passrt.metrics import LOW_SCORE, Agreement

TIGHTEN, RELAX, FLOOR, RELAX_AFTER = 0.7, 1.1, 0.25, 5
WINDOW = 20  # checks over which the reported agreement is measured


class Guarded:
    """A sparse backend held to a dense one (both in the Backend protocol); ``postprocess(outputs, hw,
    score_threshold=)`` decodes detections; ``every`` >= 1."""

    def __init__(self, sparse, dense, postprocess, every: int, target: float = 0.98,
                 score_threshold: float = 0.3):
        self.sparse, self.dense, self.postprocess = sparse, dense, postprocess
        self.every, self.target, self.score_threshold = every, target, score_threshold
        self.label = sparse.label
        self.policy = getattr(getattr(sparse, "model", None), "policy", None)
        self.knob = self.policy.operating_knob() if self.policy is not None else None
        self.start_value = getattr(self.policy, self.knob) if self.knob else None
        self.frames = self.checks = self.refreshes = self._good_streak = 0
        self._recent: deque = deque(maxlen=WINDOW)  # (boxes, scores, dense boxes, outputs, dense outputs)
        self._last_check: dict = {}
        self._window: dict = {}  # agreement over the recent checks, recomputed after each check

    def __call__(self, x):
        out = self.sparse(x)
        self.frames += 1
        if self.frames % self.every == 0:
            self._check(x, out)
        return out

    def _check(self, x, out) -> None:
        reference = self.dense(x)
        hw = tuple(x.shape[2:])
        det = self.postprocess(out, hw, score_threshold=LOW_SCORE)
        truth = self.postprocess(reference, hw, score_threshold=self.score_threshold)
        out, reference = _cpu(out), _cpu(reference)
        frame = Agreement(self.score_threshold)
        frame.add_detections(det.boxes, det.scores, truth.boxes)
        frame.add_outputs(out, reference)
        self._recent.append((det.boxes, det.scores, truth.boxes, out, reference))
        self.checks += 1
        ap = frame.ap50()
        if ap < self.target:
            self.sparse.refresh()
            self.refreshes += 1
            self._good_streak = 0
            self._scale(TIGHTEN)
        else:
            self._good_streak += 1
            if self._good_streak >= RELAX_AFTER:
                self._good_streak = 0
                self._scale(RELAX)
        self._last_check = {"frame_ap50": ap, "output_error_max": max(frame.output_error()["max"], default=0.0)}
        self._window = self._agreement()

    def _scale(self, factor: float) -> None:
        if not self.knob:
            return
        value = getattr(self.policy, self.knob) * factor
        setattr(self.policy, self.knob, min(self.start_value, max(FLOOR * self.start_value, value)))

    def _agreement(self) -> dict:
        """AP@0.5 and raw-output error over the last ``WINDOW`` checks."""
        window = Agreement(self.score_threshold)
        for boxes, scores, truth, out, ref in self._recent:
            window.add_detections(boxes, scores, truth)
            window.add_outputs(out, ref)
        return window.summary() if self._recent else {}

    def stats(self) -> dict:
        guard = {"every": self.every, "target": self.target, "checks": self.checks, "refreshes": self.refreshes,
                 **self._last_check, **self._window}  # stats() runs every frame: no AP computed here
        if self.knob:
            guard[self.knob] = getattr(self.policy, self.knob)
        return {**self.sparse.stats(), "guard": guard}

    def reset(self) -> None:
        self.sparse.reset()

    def describe(self) -> dict:
        return {**self.sparse.describe(), "guard": {"every": self.every, "target": self.target}}

    def tile_masks(self) -> dict:
        return self.sparse.tile_masks()


def _cpu(outputs):
    if isinstance(outputs, (list, tuple)):
        return [o.detach().float().cpu() for o in outputs]
    return outputs.detach().float().cpu()
