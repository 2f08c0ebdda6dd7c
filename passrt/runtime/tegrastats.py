"""Power on a Jetson, read from ``tegrastats``, and the power mode from ``nvpmodel``.

Line format: NVIDIA's "tegrastats Utility" pages (L4T 32.x Developer Guide, Appendix
"TegraStats"; Jetson Linux 35/36 "Jetson Linux Development Tools"): ``RAM X/YMB (lfb NxZMB)``,
``SWAP X/YMB (cached ZMB)``, ``CPU [X%@F,...|off]``, ``EMC_FREQ X%[@F]``, ``GR3D_FREQ X%[@F|@[F,F]]``,
temperatures ``NAME@T C``, then one ``RAIL current/average`` pair per power rail, in mW (JetPack 4
prints bare numbers, ``POM_5V_IN 2591/2591`` or ``VDD_IN 4329/4329``; JetPack 5 and 6 append
``mW``: ``VDD_GPU_SOC 2758mW/2758mW``). Orin releases may start the line with a time stamp.

The board's input power is the rail named ``*_IN`` (``POM_5V_IN`` on Nano and TX2, ``VDD_IN`` on
Xavier NX and Orin Nano/NX); boards without one (AGX Xavier, AGX Orin) report the sum of their rails.
All of this is active only where ``tegrastats`` exists (a Jetson); elsewhere power is not reported.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time

_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_GPU = re.compile(r"\bGR3D_FREQ (\d+)%")
_TEMP = re.compile(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?\d+(?:\.\d+)?)C\b")
NOT_RAILS = {"RAM", "SWAP", "IRAM", "EMC_FREQ", "GR3D_FREQ"}


def parse_line(line: str) -> dict:
    """One tegrastats line -> {"ram_mb", "ram_total_mb", "cpu_load" (per core, None when off),
    "gpu_load", "temperatures_c", "rails_mw" (rail -> current mW), "power_mw" (the board's input)}."""
    out: dict = {"rails_mw": {}, "temperatures_c": {}}
    if m := _RAM.search(line):
        out["ram_mb"], out["ram_total_mb"] = int(m[1]), int(m[2])
    if m := _CPU.search(line):
        out["cpu_load"] = [None if c.strip() == "off" else int(c.split("%")[0]) for c in m[1].split(",")]
    if m := _GPU.search(line):
        out["gpu_load"] = int(m[1])
    for name, value in _TEMP.findall(line):
        out["temperatures_c"][name] = float(value)
    for name, now, _avg in _RAIL.findall(line):
        if name not in NOT_RAILS:
            out["rails_mw"][name] = int(now)
    rails = out["rails_mw"]
    inputs = [v for k, v in rails.items() if k.endswith("_IN")]
    out["power_mw"] = inputs[0] if inputs else (sum(rails.values()) if rails else None)
    return out


def power_mode() -> str | None:
    """The nvpmodel mode name ('MAXN', '15W', ...), or None off a Jetson."""
    if not shutil.which("nvpmodel"):
        return None
    try:
        text = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_power_mode(text)


def parse_power_mode(text: str) -> str | None:
    """``nvpmodel -q`` prints 'NV Power Mode: MAXN' then the mode number."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    return m[1] if m else None


class PowerMonitor:
    """Runs ``tegrastats --interval MS`` while a run lasts and averages the board's input power.
    ``available`` is False off a Jetson, and then ``summary`` is None."""

    def __init__(self, interval_ms: int = 100):
        self.available = shutil.which("tegrastats") is not None
        self.interval_ms, self.samples_mw, self._proc = interval_ms, [], None
        self._start = self._end = 0.0

    def __enter__(self):
        if self.available:
            self._proc = subprocess.Popen(["tegrastats", "--interval", str(self.interval_ms)],
                                          stdout=subprocess.PIPE, text=True)
            threading.Thread(target=self._read, daemon=True).start()
        self._start = time.perf_counter()
        return self

    def _read(self):
        for line in self._proc.stdout:
            power = parse_line(line).get("power_mw")
            if power is not None:
                self.samples_mw.append(power)  # 10 a second: 3 MB a day, bounded enough

    def __exit__(self, *exc):
        self._end = time.perf_counter()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)

    def summary(self, frames: int) -> dict | None:
        if not self.available or not self.samples_mw:
            return None
        mean_w = sum(self.samples_mw) / len(self.samples_mw) / 1000
        seconds = self._end - self._start
        return {"power_mode": power_mode(), "power_mean_w": mean_w, "samples": len(self.samples_mw),
                "energy_per_frame_j": mean_w * seconds / frames if frames else None}
