"""The core correctness property: exact mode with threshold 0 reproduces the dense model."""

import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import passrt
from tests.engine.random_nets import decoder_networks, networks


def change_sequence(h, w, n, gen):
    """Frames with local changes of random size, one frame unchanged, one changed everywhere."""
    x = torch.rand(1, 3, h, w, generator=gen)
    frames = [x]
    for t in range(1, n):
        x = x.clone()
        if t == n - 2:
            pass  # no change at all
        elif t == n - 1:
            x = torch.rand(1, 3, h, w, generator=gen)
        else:
            for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
                bh, bw = (int(torch.randint(1, max(2, s // 3), (1,), generator=gen)) for s in (h, w))
                y0, x0 = int(torch.randint(0, h - bh + 1, (1,), generator=gen)), int(torch.randint(0, w - bw + 1, (1,), generator=gen))
                x[:, :, y0:y0 + bh, x0:x0 + bw] = torch.rand(1, 3, bh, bw, generator=gen)
        frames.append(x)
    return frames


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=networks(), h=st.integers(12, 40), w=st.integers(12, 40), seed=st.integers(0, 1000),
       tile_px=st.sampled_from([4, 8, 16]), min_tile=st.sampled_from([1, 2, 4]), crossover=st.sampled_from([0.3, 1.0]))
def test_exact_threshold_zero_equals_dense(net, h, w, seed, tile_px, min_tile, crossover):
    gen = torch.Generator().manual_seed(seed)
    engine = passrt.sparsify(net, "exact", tile_px=tile_px, min_tile=min_tile, max_tile=8,
                             crossover=crossover, scene_cut=1.0)  # never hide behind a refresh
    for t, frame in enumerate(change_sequence(h, w, 6, gen)):
        with torch.no_grad():
            want = net(frame)
        got = engine(frame)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=lambda m: f"frame {t}: {m}")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=decoder_networks(), h=st.integers(8, 28), w=st.integers(8, 28), seed=st.integers(0, 1000),
       tile_px=st.sampled_from([4, 8, 16]), crossover=st.sampled_from([0.3, 1.0]))
def test_decoders_exact_threshold_zero_equals_dense(net, h, w, seed, tile_px, crossover):
    """Transposed convs, pixel shuffle, padding ops, channel slices and a channel softmax, all sparse."""
    with torch.no_grad():
        try:
            net(torch.zeros(1, 3, h, w))
        except RuntimeError as e:  # the drawn net is undefined at this size (stride-2 convs shrink 8x8 to 1x1,
            assume("size" not in str(e))  # then a padded transposed conv to nothing): PyTorch's own model refuses it
            raise
    gen = torch.Generator().manual_seed(seed)
    engine = passrt.sparsify(net, "exact", tile_px=tile_px, max_tile=8, crossover=crossover, scene_cut=1.0)
    for t, frame in enumerate(change_sequence(h, w, 6, gen)):
        with torch.no_grad():
            want = net(frame)
        got = engine(frame)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=lambda m: f"frame {t}: {m}")
    kinds = {v["kind"] for v in engine.stats()["layers"].values()}
    assert "conv_transpose" in kinds or "move" in kinds  # the decoder ran as sparse steps, not densely
