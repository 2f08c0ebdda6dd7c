"""The tegrastats parser on lines of Nano (JetPack 4), Xavier NX (JetPack 5) and AGX Orin (JetPack 6)."""

from pathlib import Path

import pytest

from passrt.runtime.tegrastats import PowerMonitor, parse_line, parse_power_mode

LINES = {board.strip(): line.strip() for board, line in
         (row.split("|", 1) for row in (Path(__file__).parent / "data" / "tegrastats.txt").read_text().splitlines()
          if row.strip() and not row.startswith("#"))}


def test_nano_bare_numbers_and_its_input_rail():
    out = parse_line(LINES["nano-jetpack4.6"])
    assert (out["ram_mb"], out["ram_total_mb"]) == (2093, 3964) and out["cpu_load"] == [11, 4, 3, 2]
    assert out["gpu_load"] == 46 and out["temperatures_c"]["GPU"] == 33.5
    assert out["rails_mw"] == {"POM_5V_IN": 4591, "POM_5V_GPU": 1270, "POM_5V_CPU": 842}
    assert out["power_mw"] == 4591  # the input rail, not the sum: GPU and CPU are parts of it


def test_xavier_nx_mw_suffix_and_cores_off():
    out = parse_line(LINES["xavier-nx-jetpack5"])
    assert out["cpu_load"] == [9, 6, 5, 5, None, None] and out["gpu_load"] == 61
    assert out["rails_mw"]["VDD_SOC"] == 1311 and out["power_mw"] == 6329


def test_agx_orin_timestamp_gpu_cluster_and_no_input_rail():
    out = parse_line(LINES["agx-orin-jetpack6"])
    assert len(out["cpu_load"]) == 12 and out["cpu_load"][4] == 12 and out["gpu_load"] == 37
    assert out["temperatures_c"]["tj"] == pytest.approx(46.562) and out["temperatures_c"]["CV0"] == -256
    assert "EMC_FREQ" not in out["rails_mw"] and "RAM" not in out["rails_mw"]
    assert out["power_mw"] == 5758 + 1394 + 3241 + 0 + 506  # no *_IN rail: the sum of the rails


def test_power_mode_and_not_a_jetson(monkeypatch):
    assert parse_power_mode("NV Power Mode: MAXN\n0\n") == "MAXN"
    assert parse_power_mode("NV Power Mode: 15W\n2") == "15W" and parse_power_mode("") is None
    monkeypatch.setenv("PATH", "/nonexistent")
    with PowerMonitor() as monitor:
        pass
    assert not monitor.available and monitor.summary(10) is None
