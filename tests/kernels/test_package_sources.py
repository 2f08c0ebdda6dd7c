"""The package carries every source the op compiles: each one lies under passrt/csrc and matches
pyproject.toml's package data, so an installed wheel can build the op (no repository needed)."""

import fnmatch
import re
from pathlib import Path

from passrt.kernels import extension

ROOT = Path(__file__).resolve().parents[2]


def package_data_patterns():
    text = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"\[tool\.setuptools\.package-data\]\s*passrt\s*=\s*\[(.*?)\]", text, re.S)
    assert section, "pyproject.toml has no [tool.setuptools.package-data] passrt = [...]"
    return re.findall(r'"([^"]+)"', section.group(1))


def test_every_compiled_source_is_package_data():
    package = ROOT / "passrt"
    patterns = package_data_patterns()
    sources = extension._sources(cuda=True)
    headers = list((package / "csrc").rglob("*.h"))
    for path in sources + headers:
        assert path.exists(), path
        relative = path.resolve().relative_to(package).as_posix()  # raises if outside the package
        # fnmatch's * also matches "/", so compare the depth too (setuptools' globs do not cross folders).
        assert any(fnmatch.fnmatch(relative, p) and relative.count("/") == p.count("/") for p in patterns), \
            f"{relative} is compiled but not package data ({patterns})"
