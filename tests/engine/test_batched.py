"""Batched execution across streams (passrt/engine/batched.py): several streams of real SSDLite on real
clips, their sparse steps run together, each stream's outputs, tiles and statistics as when it runs alone.

Streams: two segments of vtest and one of franck at one size (batched together), bigbuckbunny (a moving
camera: its frames go dense, and to the dense engine, while the others stay sparse) at the same size, and
carphone at its own size (alone: batching is within a resolution)."""

import pytest
import torch

import passrt
from passrt.engine.batched import StackedExecutor, StreamBatch
from passrt.models import load_model
from passrt.policies import make_policy
from passrt.runtime.frames import read_frames

pytestmark = pytest.mark.usefixtures("passrt_op")

SIZE = (144, 192)
FRAMES = 8
# (policy, its parameters, dense_above): exact spreads a change over most of a 192x144 network, so its dense
# engine is asked only above 0.9 of the dense work, which leaves frames sparse to batch.
POLICIES = [("regiondrop", {}, 0.5), ("exact", {"threshold": 0.05}, 0.9)]
SAME = ("refresh", "dense_engine", "input_active_fraction", "active_fraction", "skip_rate", "macs_executed")


@pytest.fixture(scope="module")
def clips():
    spec = load_model("ssdlite-pedestrian")
    same = [("vtest", 0), ("vtest", 300), ("franck", 0), ("bigbuckbunny", 10)]
    clips = [read_frames(uri, FRAMES, SIZE, start=start, preprocess=spec.preprocess).frames for uri, start in same]
    clips.append(read_frames("carphone", FRAMES, preprocess=spec.preprocess).frames)  # 144x176: its own size
    return spec, clips


def dense_model(spec):
    """The dense engine the streams hand their runs of dense frames to (the model itself, dense)."""
    module = spec.module.eval()

    def answer(x):
        with torch.inference_mode():
            return module(x)
    return answer


def engines(spec, policy, params, count, dense_above=0.5):
    first = passrt.sparsify(spec.module, policy, dense_engine=dense_model(spec), dense_above=dense_above, **params)
    return [first] + [first.new_stream(make_policy(policy, **params)) for _ in range(count - 1)]


def record(model, outputs):
    stats = model.stats()
    masks = {k: None if m is None else m.clone() for k, m in model.tile_masks().items()}
    modes = [layer["mode"] for layer in stats["layers"].values()]
    return [o.clone() for o in outputs], {**{k: stats[k] for k in SAME}, "modes": modes}, masks


@pytest.mark.parametrize("policy,params,dense_above", POLICIES, ids=[p[0] for p in POLICIES])
def test_each_stream_batched_equals_the_stream_alone(clips, policy, params, dense_above):
    spec, frames = clips
    alone = []
    for clip in frames:
        (model,) = engines(spec, policy, params, 1, dense_above)
        alone.append([record(model, model(x)) for x in clip])
    models = engines(spec, policy, params, len(frames), dense_above)
    batch = StreamBatch(models)
    batched = [[] for _ in frames]
    for i in range(FRAMES):
        outs = batch.run(models, [clip[i] for clip in frames])
        for b, (model, out) in enumerate(zip(models, outs)):
            batched[b].append(record(model, out))

    assert [batch.unbatched(m) for m in models[:4]] == [None] * 4
    assert all(isinstance(m.executor, StackedExecutor) for m in models[:4])
    assert batch.unbatched(models[4]) == "no other stream started at its size 176x144"
    for b, (got, want) in enumerate(zip(batched, alone)):
        for i, ((out, stats, masks), (out0, stats0, masks0)) in enumerate(zip(got, want)):
            assert stats == stats0, (b, i)  # the same decisions: refreshes, hand-offs, work
            assert masks.keys() == masks0.keys()
            for k, m in masks.items():
                m0 = masks0[k]
                assert (m is None) if m0 is None else (m is not None and torch.equal(m, m0)), (b, i, k)
            for a, e in zip(out, out0):
                torch.testing.assert_close(a, e, rtol=0, atol=1e-4)  # GEMMs over more rows may round differently
    together = [sum(is_sparse(got[i][1]) for got in batched[:4]) for i in range(FRAMES)]
    assert sum(n >= 2 for n in together) >= 3, together  # calls where two or more streams ran sparse steps together
    handed = [s["dense_engine"] for _, s, _ in batched[3]]
    assert any(handed), "the moving camera's dense frames go to the dense engine"
    assert any(handed[i] and sparse_at(batched, i) for i in range(FRAMES)), \
        "a stream handed to the dense engine while others ran sparse in the same call"


def is_sparse(stats):
    return not stats["refresh"] and "sparse" in stats["modes"]


def sparse_at(batched, i):
    return any(is_sparse(got[i][1]) for got in batched[:3])  # a stream other than the moving camera


def test_a_stream_that_reaches_a_size_later_runs_alone(clips):
    spec, frames = clips
    models = engines(spec, "regiondrop", {}, 2)
    batch = StreamBatch(models)
    batch.run(models[:1], [frames[0][0]])  # stream 1 starts alone
    outs = batch.run(models, [frames[0][1], frames[1][0]])  # stream 2 arrives at the same size later
    assert batch.unbatched(models[0]) == batch.unbatched(models[1]) == "no other stream started at its size 192x144"
    (alone,) = engines(spec, "regiondrop", {}, 1)
    for a, e in zip(outs[1], alone(frames[1][0])):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


def test_other_executors_run_alone(clips):
    spec, frames = clips
    first = passrt.sparsify(spec.module, "regiondrop", executor="reference")
    models = [first, first.new_stream(make_policy("regiondrop"))]
    batch = StreamBatch(models)
    batch.run(models, [frames[0][0], frames[1][0]])
    assert batch.unbatched(models[0]) == "its executor is the reference one; batching is the native executor's"
