"""``dense``: everything, every frame (the engine's own dense path)."""

from passrt.policies.base import Policy


class Dense(Policy):
    name = "dense"

    def begin_frame(self, ctx, x, refresh):
        return True
