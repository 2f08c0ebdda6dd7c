"""One PolicySpec for every way of naming a policy: the CLI string, a list of them, a recorded description."""

import pytest

from passrt.errors import PassrtError
from passrt.policies import PolicySpec, RegionDrop, make_policy


def test_parse_fills_common_parameters_only_where_the_policy_takes_them():
    spec = PolicySpec.parse("regiondrop:margin=2", {"threshold": 0.2, "feature_threshold": 0.1})
    assert (spec.name, spec.params, spec.label) == ("regiondrop", {"threshold": 0.2, "margin": 2}, "regiondrop:margin=2")
    policy = spec.build()
    assert isinstance(policy, RegionDrop) and (policy.threshold, policy.margin) == (0.2, 2)


def test_parse_list_splits_on_policy_names():
    specs = PolicySpec.parse_list("dense,regiondrop:threshold=0.1,margin=2,exact;layerwise:threshold=0.05")
    assert [(s.name, s.params) for s in specs] == [("dense", {}), ("regiondrop", {"threshold": 0.1, "margin": 2}),
                                                   ("exact", {}), ("layerwise", {"threshold": 0.05})]


def test_switches_are_given_as_true_or_false():
    assert PolicySpec.parse("regiondrop:cell_margin=false").build().cell_margin is False
    assert PolicySpec.parse("regiondrop:cell_margin=True").build().cell_margin is True
    with pytest.raises(PassrtError, match="cell_margin must be bool"):
        PolicySpec.parse("regiondrop:cell_margin=0").build()


def test_description_round_trip():
    policy = make_policy("regiondrop", threshold=0.07, min_pixels=4)
    again = PolicySpec.from_description(policy.describe()).build()
    assert again.describe() == policy.describe()


@pytest.mark.parametrize("text, message", [
    ("nope", "unknown policy 'nope'"),
    ("regiondrop:margin", "is not NAME=VALUE"),
    ("regiondrop:colour=3", "has no parameter colour"),
    ("regiondrop:margin=1.5", "margin must be int"),
])
def test_bad_specs_say_what_is_wrong(text, message):
    with pytest.raises(PassrtError, match=message):
        PolicySpec.parse(text).build()
