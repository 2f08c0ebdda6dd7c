"""benchmarks/cost_calibrate.py: measured / predicted per layer from twins_test's timing JSON."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from passrt.plan import cost

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def calibrate():
    spec = importlib.util.spec_from_file_location("cost_calibrate", ROOT / "benchmarks" / "cost_calibrate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_calibrate"] = module
    spec.loader.exec_module(module)
    return module


def test_ratios_per_kind(calibrate, tmp_path):
    layers = calibrate.ssdlite_layers()
    labels = [line.split('"')[1] for line in (ROOT / "tests" / "native" / "ssdlite_layers.h").read_text().splitlines()
              if line.strip().startswith('{"')]
    assert set(labels) <= set(layers), "twins_test's layer table is SSDLite's conv steps (regenerate it if not)"
    dev = cost.DEVICES["h200"]
    # A GPU exactly twice as slow as the model everywhere: every ratio is 2.
    timing = [{"layer": l, **{k: 2e3 * cost.sparse_time(layers[l], a, dev, cost.Efficiency())
                              for k, a in calibrate.ACTIVITY.items()}} for l in labels]
    path = tmp_path / "native_timing.json"
    path.write_text(json.dumps(timing))
    assert calibrate.main([str(path), "h200", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "calibration.json").read_text())
    assert len(result["layers"]) == len(labels) and sum(v["layers"] for v in result["kinds"].values()) == len(labels)
    for v in result["kinds"].values():
        assert v["median_ratio_at_100"] == pytest.approx(2.0)


def test_bad_input_is_one_line(calibrate, tmp_path, capsys):
    assert calibrate.main([str(tmp_path / "missing.json"), "h200", str(tmp_path)]) == 2
    assert calibrate.main([str(tmp_path / "missing.json"), "tpu", str(tmp_path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("cost_calibrate: error:") for line in err)
