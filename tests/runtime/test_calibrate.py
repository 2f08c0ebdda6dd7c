"""`passrt calibrate` on a short real clip: the point it picks meets its target on frames it never saw."""

import json

import pytest

from passrt import assets
from passrt.cli.main import main
from passrt.errors import PassrtError
from passrt.policies.spec import PolicySpec
from passrt.runtime.calibrate import SAFE, candidates


def test_candidates_cover_the_grid_keep_fixed_parameters_and_end_with_the_safe_point():
    grid = candidates(PolicySpec.parse("regiondrop:margin=2"))
    assert grid[-1] == SAFE and len(grid) == 7 + 1
    assert all(c.params["margin"] == 2 and c.params["threshold"] == "auto" for c in grid[:-1])
    absolute = candidates(PolicySpec.parse("regiondrop:threshold=0.1"))
    assert all("noise_multiple" not in c.params for c in absolute[:-1])  # an absolute threshold stays absolute
    with pytest.raises(PassrtError, match="nothing to calibrate for policy 'dense'"):
        candidates(PolicySpec.parse("dense"))


def test_calibrate_writes_a_policy_that_meets_its_target_on_held_out_frames(tmp_path, capsys):
    out = tmp_path / "policy.json"
    clip = str(assets.fetch("carphone"))
    assert main(["calibrate", "--input", clip, "--frames", "60", "--target-agreement", "0.99",
                 "-o", str(out), "--plot", str(tmp_path / "curve.png")]) == 0
    record = json.loads(out.read_text())
    cal = record["calibration"]
    chosen = next(r for r in cal["search"] if r["label"] == cal["chosen"])
    # The target holds both agreement figures: AP@0.5 and AP@0.5 at the display threshold.
    assert min(chosen["agreement_ap50"], chosen["agreement_ap50_display"]) >= 0.99
    # The fastest of those that meet the target on the search frames.
    meeting = [r for r in cal["search"] if min(r["agreement_ap50"], r["agreement_ap50_display"]) >= 0.99]
    assert chosen["speedup_vs_dense"] == max(r["speedup_vs_dense"] for r in meeting)
    held = cal["held_out"]
    assert cal["held_out_frames"] == [42, 60] and min(held["agreement_ap50"], held["agreement_ap50_display"]) >= 0.99
    # Measured against ONNX Runtime too, the dense engine a CPU user would otherwise run.
    assert all(r["speedup_vs_onnxruntime"] > 0 for r in cal["search"] + [held])
    assert (tmp_path / "curve.png").stat().st_size > 0
    assert "<- chosen" in capsys.readouterr().out
    # The file is a policy everywhere a policy is accepted.
    spec = PolicySpec.parse(str(out))
    assert spec.name == record["policy"]["name"] and spec.build().describe()["name"] == spec.name
    assert PolicySpec.parse_list(f"dense,{out}")[1] == spec


def test_policy_file_errors_are_one_line(tmp_path):
    with pytest.raises(PassrtError, match="cannot read policy file"):
        PolicySpec.parse(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "regiondrop"}')
    with pytest.raises(PassrtError, match="is not a policy file"):
        PolicySpec.parse(str(bad))
