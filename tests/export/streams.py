"""Shared check of the export tests: an exported graph, run frame after frame, gives the engine's outputs."""

import pytest
import torch


def assert_stream_matches_engine(engine, stream, frames, atol: float = 1e-4) -> int:
    """``stream`` (an ExportedStream) equals ``engine`` (a SparseModel) on every frame, outputs to ``atol`` and
    active fraction to 1e-5; returns how many frames were partial (0 < active < 0.9), so a caller can require
    that the frames really were sparse, not all refreshes."""
    partial = 0
    for x in frames:
        expected, got = engine(x), stream(x)
        assert len(got) == len(expected)
        for a, b in zip(expected, got):
            torch.testing.assert_close(b, a, rtol=0, atol=atol)
        active = engine.stats()["active_fraction"]
        assert stream.last_active_fraction == pytest.approx(active, abs=1e-5)
        partial += 0 < active < 0.9
    return partial
