"""The command line as a user runs it: real clip, real model, and bad inputs."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch


def passrt(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "passrt", *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_commands():
    out = passrt("--help")
    assert out.returncode == 0 and all(c in out.stdout for c in ("run", "bench", "assets"))
    assert "csi://N" in passrt("run", "--help").stdout


def test_run_writes_video_and_summary(tmp_path):
    # vtest: a static camera, so regiondrop recomputes only the tiles people walk through.
    out = passrt("run", "--input", "vtest", "--headless", "--max-frames", "15", "--policy", "regiondrop",
                 "--output", str(tmp_path / "out.mp4"), "--json", str(tmp_path / "run.json"), "--show-tiles")
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["frames"] == 15 and summary["corrupt_frames"] == 0
    assert set(summary["stages_ms"]) >= {"preprocess", "engine", "postprocess", "total"}
    total = summary["stages_ms"]["total"]
    assert total["count"] == 15 and total["min"] <= total["p50"] <= total["p90"] <= total["p99"] <= total["max"]
    assert "Throughput:" in out.stderr and "percentile(99%)" in out.stderr  # trtexec's terms
    # The sparse path is taken: one dense refresh (the first frame), then a small share of
    # the MACs (measured: mean active fraction 0.17, refreshes 1).
    engine = summary["engine"]
    assert engine["frames"] == 15 and engine["refreshes"] == 1
    assert 0 < summary["active_fraction_mean"] < 0.5
    assert 0 < engine["macs_executed_mean"] < 0.5 * engine["macs_dense"]
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 15
    assert "FPS" in out.stderr


# Measured on vtest, 12 frames (2 warm-up): agreement with dense (mAP@0.5) and active fraction
# (executed / dense MACs). Floors leave margin; a broken sparse path misses them by far.
BENCH_EXPECT = {  # policy: (agreement at least, active fraction below)
    "regiondrop": (0.9, 0.5),                 # measured 0.989, 0.18
    "exact:threshold=0.05": (0.95, 0.99),     # measured 1.000, 0.92
    "layerwise": (0.9, 0.9),                  # measured 0.989, 0.71
}


def test_bench_json(tmp_path):
    out = passrt("bench", "--input", "vtest", "--frames", "12", "--warmup", "2",
                 "--policies", "dense,regiondrop,exact:threshold=0.05,layerwise", "--json", str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    policies = result["policies"]
    assert set(policies) == {"dense", "onnxruntime", *BENCH_EXPECT}
    for entry in policies.values():
        assert entry["fps_median"] > 0 and entry["throughput_fps"] > 0
        lat = entry["latency_ms"]
        assert set(lat) == {"min", "mean", "p50", "p90", "p95", "p99", "max"}
        assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert len(entry["per_frame"]["latency_ms"]) == 12
        assert entry["detections_per_frame"] > 0  # vtest has people on every frame
    dense = policies["dense"]
    assert dense["agreement_ap50"] == dense["agreement_ap50_display"] == 1.0 and dense["active_fraction"] == 1.0
    assert dense["output_error"]["max"] == [0.0, 0.0]
    assert dense["macs_executed"] == dense["macs_dense"] > 0
    ort = policies["onnxruntime"]  # the same model in another runtime
    assert ort["agreement_ap50"] >= 0.95 and 0 < max(ort["output_error"]["max"]) < 1e-2
    for name, (agreement, active) in BENCH_EXPECT.items():
        entry = policies[name]
        assert entry["agreement_ap50"] >= agreement, (name, entry["agreement_ap50"])
        # Ranking more detections below the display threshold only extends the precision curve.
        assert entry["agreement_ap50"] >= entry["agreement_ap50_display"] - 1e-9, name
        assert max(entry["output_error"]["max"]) > 0, name  # sparse and approximate: not bit-equal
        assert 0 < entry["active_fraction"] < active, (name, entry["active_fraction"])
        assert 0 < entry["macs_executed"] < entry["macs_dense"] == dense["macs_dense"], name
        # CPU: the native executor, with ONNX Runtime standing by for runs of frames predicted to be dense:
        # regiondrop has none on vtest; exact and layerwise may hand it frames whose change spreads over most
        # of the network, never all of them (the first of a run, and the first frame, stay passrt's)
        assert entry["executor"] == "native (C++ tile kernels, CPU)", (name, entry["executor"])
        assert entry["dense_engine"] == "onnxruntime", name
        assert entry["dense_engine_frames"] == 0 if name == "regiondrop" else entry["dense_engine_frames"] < 12, name
    assert result["machine"]["cores"] >= 1 and "torch" in result["machine"]
    assert "x dense" in out.stdout


def odd_clip(path, size=(101, 77), frames=6):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


def test_resolution_the_tiles_do_not_divide(tmp_path):
    clip = odd_clip(tmp_path / "odd.avi")
    out = passrt("run", "--input", str(clip), "--headless", "--policy", "exact")
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("args,message", [
    (["run", "--input", "/no/such/clip.mp4", "--headless"], "no such file"),
    (["run", "--input", "carphone", "--headless", "--model", "yolo"], "unknown model 'yolo'"),
    (["run", "--input", "carphone", "--headless", "--policy", "fast"], "unknown policy 'fast'"),
    (["run", "--input", "carphone", "--headless", "--param", "margin"], "is not NAME=VALUE"),
    (["run", "--input", "carphone", "--headless", "--output", "/no/dir/out.mp4"], "does not exist"),
    (["run", "--input", "carphone"], "--headless"),  # no display here
    (["run", "--camera", "9", "--headless"], "cannot open camera 9"),
    (["bench", "--input", "carphone", "--half"], "--half needs --device cuda"),
    (["bench", "--input", "carphone", "--executors", "native,gpu"], "unknown executor 'gpu'"),
    (["bench", "--input", "carphone", "--device", "cuda"], "sees no CUDA GPU"),
])
def test_bad_input_one_line_no_traceback(args, message, tmp_path, monkeypatch):
    if "--device" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.delenv("DISPLAY", raising=False)
    out = passrt(*args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 or out.stderr.strip().splitlines()[-1].startswith("passrt: error:")


def test_corrupt_file_clear_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    out = passrt("run", "--input", str(bad), "--headless")
    assert out.returncode == 2 and "bad.mp4" in out.stderr and "Traceback" not in out.stderr


def test_bench_and_run_an_onnx_file(tmp_path):
    """Any user's ONNX CNN: raw-output error against dense per output, no detection columns."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
             numpy_helper.from_array(rng.normal(size=(4, 2, 4, 4)).astype(np.float32) * 0.3, "wt")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("ConvTranspose", ["r", "wt"], ["y"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["a"], ["g"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                               helper.make_tensor_value_info("g", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "net.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    out = passrt("bench", "--model", str(path), "--input", "vtest", "--frames", "4", "--warmup", "1",
                 "--policies", "dense,regiondrop,exact", "--json", str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    policies = json.loads((tmp_path / "b.json").read_text())["policies"]
    assert set(policies) == {"dense", "onnxruntime", "regiondrop", "exact"}
    for label, entry in policies.items():
        assert len(entry["output_error"]["max"]) == 2 and "agreement_ap50" not in entry
    assert max(policies["exact"]["output_error"]["max"]) < 1e-4  # threshold 0: the dense outputs
    assert max(policies["onnxruntime"]["output_error"]["max"]) < 1e-4  # the import is the file
    assert policies["regiondrop"]["active_fraction"] < 0.9
    out = passrt("run", "--model", str(path), "--input", "vtest", "--headless", "--max-frames", "3",
                 "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["frames"] == 3


def test_onnx_model_errors_are_one_line(tmp_path):
    out = passrt("bench", "--model", str(tmp_path / "missing.onnx"), "--input", "vtest", "--frames", "2")
    assert out.returncode == 2 and out.stderr.strip() == f"passrt: error: no such ONNX file: {tmp_path / 'missing.onnx'}"


def test_bench_and_run_a_darknet_cfg(tmp_path):
    """A Darknet model by path (weights beside the cfg): detections, so AP agreement like the named model."""
    from pathlib import Path

    from passrt import assets

    cfg = tmp_path / "mine.cfg"
    cfg.write_text(Path(assets.fetch("yolov3-tiny-cfg")).read_text())
    (tmp_path / "mine.weights").symlink_to(Path(assets.fetch("yolov3-tiny")).resolve())
    out = passrt("bench", "--model", str(cfg), "--input", "vtest", "--frames", "3", "--warmup", "1",
                 "--policies", "dense,exact", "--json", str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    assert result["model"] == str(cfg) and set(result["policies"]) == {"dense", "onnxruntime", "exact"}
    assert result["policies"]["exact"]["agreement_ap50"] == 1.0
    assert max(result["policies"]["onnxruntime"]["output_error"]["max"]) < 1e-3
    out = passrt("run", "--model", str(cfg), "--input", "vtest", "--headless", "--max-frames", "2",
                 "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["model"] == str(cfg)
    (tmp_path / "mine.weights").unlink()
    out = passrt("run", "--model", str(cfg), "--input", "vtest", "--headless")
    assert out.returncode == 2 and out.stderr.strip() == (
        f"passrt: error: no Darknet weights for {cfg}: expected {tmp_path / 'mine.weights'} beside it "
        "(passrt.models.darknet.load_darknet(cfg, weights) takes them from elsewhere)")
