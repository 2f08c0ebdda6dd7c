"""FasterWay (engine/faster.py) and the op executor's dense nodes, which it chooses between."""

import torch

from passrt.engine import faster
from passrt.engine.faster import FasterWay
from passrt.engine.node import NodeAttributes, pass_sparse_conv2d
from passrt.engine.program import OpNode, _layout
from tests.conftest import require_op


def test_each_way_is_tried_then_the_fastest_kept(monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr(faster.time, "perf_counter", lambda: float(next(clock)))
    cost = {"a": 5, "b": 2}  # clock ticks each way takes

    def compute(way):
        for _ in range(cost[way] - 1):  # run() reads the clock once before and once after
            next(clock)
        return way

    chooser = FasterWay(("a", "b"))
    ran = [chooser.run(compute) for _ in range(2 * faster.TRIALS + 3)]
    assert sorted(ran[:2 * faster.TRIALS]) == ["a"] * faster.TRIALS + ["b"] * faster.TRIALS
    assert ran[2 * faster.TRIALS:] == ["b"] * 3 and chooser.chosen == "b"


def test_op_node_with_every_tile_active_equals_the_node_reference_both_ways():
    """A dense node runs through PyTorch's conv or the tile kernels (both tried, then the faster); either
    way the cache gets the node's values: symmetric and asymmetric pads, a depthwise conv, and a residual
    aliased to the output."""
    require_op()
    torch.manual_seed(0)
    x = _layout(torch.randn(1, 8, 13, 17))
    cases = [(1, (1, 1, 1, 1), (1, 1), False), (8, (0, 0, 1, 1), (2, 2), False), (1, (1, 1, 1, 1), (1, 1), True)]
    for groups, pads, strides, residual in cases:
        weight, bias = torch.randn(8, 8 // groups, 3, 3), torch.randn(8)
        attrs = NodeAttributes((3, 3), strides, (1, 1), pads, groups, 4, 2, 0.01, 1 if residual else 0)
        top, left, bottom, right = pads
        h = (13 + top + bottom - 3) // strides[0] + 1
        w = (17 + left + right - 3) // strides[1] + 1
        cache = _layout(torch.randn(1, 8, h, w))
        mask = torch.ones(1, 1, -(-h // 4), -(-w // 4))
        node = OpNode()
        for _ in range(2 * faster.TRIALS + 1):
            expected = pass_sparse_conv2d(x, mask, cache.clone(), weight, bias, cache.clone() if residual else None,
                                          attrs)
            assert node(x, mask, cache, weight, bias, cache if residual else None, attrs) is cache
            torch.testing.assert_close(cache, expected, rtol=0, atol=1e-4)
        chooser = node._dense_ways[id(weight)]
        assert all(len(t) == faster.TRIALS for t in chooser.seconds.values()) and chooser.chosen is not None
