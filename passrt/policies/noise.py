"""How noisy a stream is, measured online, so that a change test means the same on every camera.

An absolute threshold on pixel differences means different things on different sensors,
codecs, resolutions and lighting: vtest's codec copies most blocks exactly between frames,
carphone's old sensor moves every pixel by a few 8-bit steps. So the policies test a change
against ``multiple x level``, where ``level`` is the stream's noise, estimated like this:

- the *statistic* of a block is the ``rank``-th largest pixel change in it (max over
  channels of ``|x_t - x_{t-1}|``): the quantity RegionDrop's own test ("at least
  ``min_pixels`` pixels above the threshold") compares, so ``multiple`` reads as "how many
  times the typical static block's value";
- a frame's *measurement* is the median of the statistic over blocks (every second block row
  and column, for speed): on a fixed camera most blocks are static, so this is noise, not
  motion. Consecutive frames, not the reference: a slow global drift (lighting) then adds up
  against the reference and is detected, instead of being learned as noise;
- the *level* tracks the measurements, moving towards each by at most a factor ``STEP`` per
  frame (measurements spread wider than that make it step like a sign tracker in the log domain,
  settling near their median). So a burst of k frames (a codec's quality jump, a flash) moves it
  by at most ``STEP**k`` and cannot pin the threshold for the frames after it, and a lasting
  change of the noise is followed within ``log(change) / log(STEP)`` frames (8 frames for 2x).
  (The earlier rule, ``max(measured, 0.98 x level)``, remembered a burst: on sports2d one VP9
  burst frame held the threshold at its cap for ~35 frames while the typical noise was a third of
  the burst's; benchmarks/RESULTS.md.) It is updated only on frames whose changed fraction is
  below ``STATIC`` and whose measurement is at most ``GROWTH`` times the level:
  a camera that starts to move, a light switched on or a scene cut are events, not noise (they
  are then flagged as changes, and a scene cut refreshes). The first measurement after a reset
  is taken as it is unless it is above ``CEILING``, which no usable camera's noise reaches
  (48 8-bit steps at the 97th percentile of a block: a per-channel sigma near 12 steps); until
  then the threshold is the policy's ``max_threshold``.

Everything is standard tensor ops on (1,)-shaped states with no host synchronisation, so the
exported ONNX graph runs the same estimator (the level is one more explicit state; 0 means
"not measured yet"). ``floor`` keeps the threshold above the quantisation of 8-bit video
(1/255 for inputs in [0, 1]) where a codec copies blocks exactly and the measured level is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


STEP = 1.1  # per frame the level moves towards the measurement by at most this factor
GROWTH = 4.0  # a measurement above this multiple of the level is an event, not noise
QUANTILE = 0.75  # of the static blocks' statistic: compression noise is larger in textured blocks
COHERENCE = 1.5  # static: a block's change over two frames is at most this times its change over one
MIN_STATIC = 0.25  # fewer static blocks than this (a moving camera): no measurement
AUTO = "auto"  # the value of a ``threshold`` parameter that asks for this estimate
STATIC = 0.5  # the level learns only from frames with less than this fraction changed
CEILING = 48 / 255  # no measurement above this is noise (for inputs in [0, 1])


def is_auto(threshold) -> bool:
    return isinstance(threshold, str) and threshold == AUTO


def threshold_knob(threshold):
    """The parameter that trades speed for accuracy in a threshold test (Policy.operating_knob):
    the multiple of the noise for 'auto', the threshold itself when absolute, none at 0 (exact)."""
    if is_auto(threshold):
        return "noise_multiple"
    return "threshold" if threshold > 0 else None


def _sampled_blocks(t: torch.Tensor, block: int) -> torch.Tensor:
    """(1, C, H, W) -> (C, rows, cols, block, block): every second block row and column that lies
    wholly inside the frame, a view (sampled before any arithmetic, so the statistic costs a
    quarter of a full-frame pass, and no padded copy is made)."""
    if t.shape[2] < block or t.shape[3] < block:  # a frame smaller than a block: the frame is the block
        t = F.pad(t, (0, max(block - t.shape[3], 0), 0, max(block - t.shape[2], 0)))
    return t[0].unfold(1, block, 2 * block).unfold(2, block, 2 * block)


def _block_statistic(image: torch.Tensor, other: torch.Tensor, block: int, rank: int) -> torch.Tensor:
    """(blocks,): each sampled block's ``rank``-th largest pixel change between two frames."""
    diff = (_sampled_blocks(image, block) - _sampled_blocks(other, block)).abs().amax(0)  # (rows, cols, block, block)
    per_block = diff.reshape(-1, block * block)
    return torch.topk(per_block, min(rank, block * block), dim=1).values[:, -1]


def _block_statistics(image: torch.Tensor, others: list, block: int, rank: int) -> torch.Tensor:
    """(len(others), blocks): the block statistic of ``image`` against each frame of ``others``."""
    return torch.stack([_block_statistic(image, other, block, rank) for other in others])


def frame_noise(image: torch.Tensor, prev: torch.Tensor, prev2: torch.Tensor, block: int, rank: int,
                floor: float, statistics=None) -> tuple[torch.Tensor, torch.Tensor]:
    """((1,) measurement, (1,) fraction of sampled blocks found static) for one frame.

    A block is static when its change over two frames is not larger than over one (noise does
    not add up, motion does); the measurement is the ``QUANTILE`` of the statistic over the
    static blocks (0 when fewer than ``MIN_STATIC`` of the blocks are). ``statistics``: another
    implementation of :func:`_block_statistics` (the native kernel, passrt.kernels.native)."""
    one, two = (statistics or _block_statistics)(image, [prev, prev2], block, rank)
    static = two <= COHERENCE * one + floor
    n = one.numel()
    count = static.float().sum()
    ranked = torch.sort(torch.where(static, one, torch.full_like(one, float("inf")))).values
    index = torch.clamp((QUANTILE * count).long(), max=n - 1).reshape(1)
    fraction = (count / n).reshape(1)
    measured = torch.where(fraction >= MIN_STATIC, ranked.index_select(0, index), torch.zeros_like(fraction))
    return measured, fraction


def update_level(level: torch.Tensor, measured: torch.Tensor, changed_fraction: torch.Tensor,
                 refresh: torch.Tensor) -> torch.Tensor:
    """The new (1,) level (see the module docstring); ``refresh`` (1,) 1.0 on a dense refresh."""
    plausible = ((measured > 0) & (measured <= CEILING)).float()
    unset = (level <= 0).float()
    usable = ((changed_fraction < STATIC) & (measured <= GROWTH * level)).float() * plausible
    followed = torch.minimum(torch.maximum(measured, level / STEP), level * STEP)
    learned = unset * plausible * measured + (1 - unset) * (usable * followed + (1 - usable) * level)
    # On a refresh the previous frame may be another scene (or nothing): measure nothing.
    return torch.where(refresh.reshape(1) > 0, level, learned)


def threshold(level: torch.Tensor, measured: torch.Tensor, multiple: float, floor: float,
              ceiling: float) -> torch.Tensor:
    """(1,): this frame's change threshold: the level before this frame's update (the first
    measurement while the level is not set yet), times ``multiple``, at least ``floor`` x
    ``multiple`` and at most ``ceiling``. On very noisy footage (film grain, a sensor at high
    gain) a threshold several times the noise would hide people walking, so the test then stays
    at ``ceiling`` and recomputes more, rather than answer less accurately. While nothing is
    known of the noise (the first frames; no plausible measurement) it is ``ceiling`` too."""
    known = (level > 0) | ((measured > 0) & (measured <= CEILING))
    tau = torch.clamp(multiple * torch.clamp(torch.where(level > 0, level, measured), min=floor), max=ceiling)
    return torch.where(known, tau, torch.full_like(tau, ceiling))
