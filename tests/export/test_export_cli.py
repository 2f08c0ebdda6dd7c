"""`passrt export` as a user runs it."""

import onnx
import pytest

from passrt.cli.main import main
from passrt import contract


def test_export_writes_a_verified_sparse_graph(tmp_path, capsys):
    out = tmp_path / "rd.onnx"
    assert main(["export", "--input-size", "144x192", "--param", "margin=2", "-o", str(out),
                 "--verify", "vtest", "--verify-frames", "3"]) == 0
    text = capsys.readouterr().out
    assert "88 PassSparseConv2d nodes" in text and "verified on 3 frames" in text
    diff = float(text.split("max |engine - graph| = ")[1].split(",")[0])
    assert diff < 1e-4
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert '"margin": 2' in meta[contract.META_POLICY]


@pytest.mark.parametrize("argv,message", [
    (["--policy", "nosuch"], "unknown policy 'nosuch'"),
    (["--input-size", "576by768"], "--input-size must be HEIGHTxWIDTH"),
    (["--input-size", "0x768"], "--input-size must be HEIGHTxWIDTH"),
    (["-o", "/nonexistent/dir/m.onnx"], "directory /nonexistent/dir does not exist"),
    (["--model", "yolo"], "unknown model 'yolo'"),
])
def test_export_errors_are_one_line(tmp_path, capsys, argv, message):
    if "-o" not in argv:
        argv = argv + ["-o", str(tmp_path / "m.onnx")]
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("passrt: error:") and message in err and err.count("\n") == 1
    assert "Traceback" not in err
