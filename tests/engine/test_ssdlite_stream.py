"""The real detector on the real clip through the sparse engine.

These run the full SSDLite model on vtest.avi frames (fetched on first use) and are the
slowest tests of the suite (about two minutes on two cores).
"""

import cv2
import numpy as np
import pytest
import torch

import passrt
from passrt.models import load_model
from passrt.runtime.sources import open_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spec():
    return load_model("ssdlite-pedestrian")


def vtest_frames(spec, n, scale=1.0):
    out = []
    with open_source("vtest", max_frames=n) as source:
        for frame in source:
            image = frame.image if scale == 1.0 else cv2.resize(frame.image, None, fx=scale, fy=scale,
                                                                interpolation=cv2.INTER_AREA)
            out.append(spec.preprocess(image))
    return out


def max_error(got, want):
    return max(float((g - w).abs().max()) for g, w in zip(got, want))


def test_exact_threshold_zero_equals_dense_on_vtest(spec):
    # Never refresh and never fall back to dense: every frame after the first goes through
    # the sparse kernels, even where compression noise changes most of the image.
    engine = passrt.sparsify(spec.module, "exact", threshold=0.0, scene_cut=1.0, crossover=1.0)
    modes, worst = set(), 0.0
    with torch.no_grad():
        for x in vtest_frames(spec, 110):
            worst = max(worst, max_error(engine(x), spec.module(x)))
            modes |= {layer["mode"] for layer in engine.stats()["layers"].values()}
    assert "sparse" in modes
    assert worst < 1e-4, worst


def test_positive_threshold_error_is_bounded_over_500_frames(spec):
    """Half resolution (384x288) keeps this affordable; the mechanism is resolution-independent."""
    engine = passrt.sparsify(spec.module, "exact", threshold=0.05, scene_cut=1.0)
    errors = []
    with torch.no_grad():
        for x in vtest_frames(spec, 500, scale=0.5):
            errors.append(max_error(engine(x), spec.module(x)))
    assert len(errors) == 500
    assert engine.stats()["active_fraction_mean"] < 0.9  # the threshold really skips work
    # No drift: the typical error of the last 100 frames is that of the first 100. (Maxima
    # follow the content of single frames; medians over windows show a trend if there is one.)
    early, late = np.median(errors[1:100]), np.median(errors[400:])
    assert late <= 1.25 * early, (early, late)
    assert max(errors) < 5.0  # bounded: raw logits and box encodings move by a few units at most
