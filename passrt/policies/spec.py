"""Policies by name, and one :class:`PolicySpec` that every way of naming a policy parses.

The CLI's ``regiondrop:threshold=0.1,margin=2``, a list of them (``passrt bench --policies``),
a policy file (``policy.json``, written by ``passrt calibrate``) and the policy an exported ONNX
file records in its metadata (``Policy.describe()``) all become a PolicySpec; :meth:`PolicySpec.build` (= :func:`make_policy`) checks the parameters and makes
the policy. Parsing needs no torch; building imports the policy classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from passrt.errors import PassrtError

NAMES = ("dense", "exact", "regiondrop", "layerwise", "pass")


def registry() -> dict:
    """Every policy class by name."""
    from passrt.policies.dense import Dense
    from passrt.policies.exact import Exact
    from passrt.policies.layerwise import LayerWise
    from passrt.policies.pass_gates import PassGates
    from passrt.policies.regiondrop import RegionDrop

    classes = {c.name: c for c in (Dense, Exact, RegionDrop, LayerWise, PassGates)}
    assert tuple(classes) == NAMES
    return classes


@dataclass(frozen=True)
class PolicySpec:
    """A policy by name with its parameters; ``label`` is how the user wrote it."""

    name: str
    params: dict = field(default_factory=dict)
    label: str = ""

    @classmethod
    def parse(cls, text: str, common: dict | None = None) -> "PolicySpec":
        """'regiondrop:threshold=0.1,margin=2' or a policy file 'policy.json'; ``common`` (e.g. --threshold)
        fills parameters the policy takes (a file's parameters win: they were calibrated together)."""
        if text.strip().endswith(".json"):
            return cls.from_file(text.strip(), common)
        name, _, rest = text.strip().partition(":")
        _check_name(name)
        params = {}
        if common:
            accepted = parameter_names(name)
            params = {k: v for k, v in common.items() if k in accepted}
        params.update(parse_pairs(rest.split(",") if rest else []))
        return cls(name, params, text.strip())

    @classmethod
    def parse_list(cls, text: str, common: dict | None = None) -> list["PolicySpec"]:
        """Specs separated by ';', or by ',' where the next item starts a new policy name (or is a file)."""
        items, current = [], ""
        for part in text.replace(";", ",").split(","):
            name = part.split(":", 1)[0].strip()
            if current and (name in NAMES or "=" not in part or name.endswith(".json")):
                items.append(current)
                current = part.strip()
            else:
                current = f"{current},{part.strip()}" if current else part.strip()
        if current:
            items.append(current)
        return [cls.parse(item, common) for item in items]

    @classmethod
    def from_description(cls, described: dict) -> "PolicySpec":
        """The spec of a ``Policy.describe()`` record (e.g. an exported graph's metadata)."""
        described = dict(described)
        name = described.pop("name")
        _check_name(name)
        accepted = parameter_names(name)
        return cls(name, {k: v for k, v in described.items() if k in accepted}, name)

    @classmethod
    def from_file(cls, path: str, common: dict | None = None) -> "PolicySpec":
        """A policy file: JSON with a "policy" record ({"name": ..., parameters}), as `passrt calibrate` writes."""
        import json

        try:
            with open(path) as f:
                record = json.load(f)
            described = record["policy"]
            _check_name(described.get("name"))
        except OSError as e:
            raise PassrtError(f"cannot read policy file {path}: {e.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise PassrtError(f"{path} is not a policy file (JSON with a \"policy\" record, as `passrt calibrate` "
                              "writes)") from None
        spec = cls.from_description(described)
        accepted = parameter_names(spec.name)
        params = {k: v for k, v in (common or {}).items() if k in accepted}
        return cls(spec.name, {**params, **spec.params}, path)

    def build(self):
        return make_policy(self.name, **self.params)


def parameter_names(name: str) -> set[str]:
    return {f.name for f in fields(registry()[name])}


def make_policy(spec, **params):
    """A policy from a name ('dense', 'exact', 'regiondrop', 'layerwise', 'pass') and parameters, or as given."""
    from passrt.policies.base import Policy

    if isinstance(spec, PolicySpec):
        spec, params = spec.name, {**spec.params, **params}
    if isinstance(spec, Policy):
        if params:
            raise PassrtError("parameters can only be given with a policy name")
        return spec
    _check_name(spec)
    cls = registry()[spec]
    defaults = {f.name: f.default for f in fields(cls)}
    unknown = set(params) - set(defaults)
    if unknown:
        raise PassrtError(f"policy '{spec}' has no parameter {', '.join(sorted(unknown))}; "
                          f"it takes: {', '.join(sorted(defaults))}")
    return cls(**{k: _typed(spec, k, v, defaults[k]) for k, v in params.items()})


def _check_name(name) -> None:
    if name not in NAMES:
        raise PassrtError(f"unknown policy '{name}'; choose one of: {', '.join(NAMES)}")


def _typed(policy: str, name: str, value, default):
    """Check a parameter against its default's type (ints may be given for floats); a ``threshold``
    is a number or 'auto' (relative to the stream's noise)."""
    from passrt.policies.noise import AUTO

    if name == "threshold":
        if value == AUTO:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
            return float(value)
        raise PassrtError(f"policy '{policy}': threshold must be a number >= 0 or '{AUTO}', got {value!r}")
    if default is None or value is None:
        return value
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != isinstance(default, bool):
        raise PassrtError(f"policy '{policy}': parameter {name} must be {kind.__name__}, got {value!r}")
    return value


def parse_pairs(pairs: list[str]) -> dict:
    """['margin=2', 'threshold=0.1'] -> {'margin': 2, 'threshold': 0.1} (numbers, none/null, true/false, else text)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PassrtError(f"policy parameter '{pair}' is not NAME=VALUE")
        out[key.strip()] = _value(value.strip())
    return out


def _value(text: str):
    if text.lower() in ("none", "null"):
        return None
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
