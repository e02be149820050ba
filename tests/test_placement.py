"""Node layout (the original's gen-ids) and where clients land."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partysubd.core.placement import (
    LOCATION_HINTS,
    NodeLayout,
    generate_ids,
    location_of_country,
)


def test_reference_default() -> None:
    assert generate_ids() == {loc: [f"{loc}-0"] for loc in LOCATION_HINTS}


def test_reference_five_in_one_location() -> None:
    assert generate_ids(5, {"enam": 1}) == {"enam": [f"enam-{i}" for i in range(5)]}


def test_reference_hundred_default_locations() -> None:
    ids = generate_ids(100)
    counts = {loc: len(nodes) for loc, nodes in ids.items()}
    assert counts == {**dict.fromkeys(LOCATION_HINTS, 11), "wnam": 12}
    assert ids["wnam"][-1] == "wnam-11"


def test_reference_nodes_is_a_minimum() -> None:
    assert generate_ids(1, {"eu": 1, "wnam": 3}) == {"eu": ["eu-0"], "wnam": ["wnam-0"]}


def test_weights_split_proportionally_with_round_robin_remainder() -> None:
    ids = generate_ids(10, {"wnam": 3, "weur": 1})
    # floor(7.5) = 7 and floor(2.5) = 2; the one left goes to wnam first.
    assert [len(ids["wnam"]), len(ids["weur"])] == [8, 2]


def test_zero_nodes_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_ids(0)


weights = st.dictionaries(
    st.sampled_from([*LOCATION_HINTS, "eu", "custom"]),
    st.integers(1, 50),
    min_size=1,
    max_size=9,
)


@given(n=st.integers(1, 300), config=weights)
def test_layout_properties(n: int, config: dict[str, int]) -> None:
    ids = generate_ids(n, config)
    all_ids = [node for nodes in ids.values() for node in nodes]
    assert len(all_ids) == len(set(all_ids)), "every id unique"
    assert len(all_ids) >= n, "nodes is a minimum"
    assert list(ids) == list(config), "locations in config order"
    total = sum(config.values())
    base = {loc: max(math.floor(w / total * n), 1) for loc, w in config.items()}
    leftover = max(n - sum(base.values()), 0)
    locations = list(config)
    for i, loc in enumerate(locations):
        extra = leftover // len(locations) + (1 if i < leftover % len(locations) else 0)
        assert len(ids[loc]) == base[loc] + extra
        assert ids[loc] == [f"{loc}-{j}" for j in range(len(ids[loc]))]


def test_country_lookup_takes_the_first_listed_location() -> None:
    assert location_of_country("US") == "wnam"
    assert location_of_country("fr") == "weur"
    assert location_of_country("JP") == "apac"
    # Listed under apac and me; apac comes first, as in the original.
    assert location_of_country("AE") == "apac"
    assert location_of_country("T1") is None
    assert location_of_country("XX") is None
    assert location_of_country(None) is None
    assert location_of_country("ZZ", {"mars": ["ZZ"]}) == "mars"


def test_choose_uses_the_country_location_when_configured() -> None:
    layout = NodeLayout.build(6, {"wnam": 1, "weur": 1})
    rng = random.Random(1)
    for _ in range(50):
        assert layout.choose("US", rng).startswith("wnam-")
        assert layout.choose("DE", rng).startswith("weur-")


def test_choose_falls_back_to_any_configured_location() -> None:
    layout = NodeLayout.build(4, {"wnam": 1, "weur": 1})
    rng = random.Random(2)
    seen = {layout.choose(country, rng) for country in ("JP", "T1", None) for _ in range(60)}
    assert seen == set(layout.node_ids)


def test_jurisdiction_keeps_nodes_inside_it() -> None:
    layout = NodeLayout.build(6, jurisdiction="eu")
    assert set(layout.nodes_by_location) == {"weur", "eeur"}
    rng = random.Random(3)
    assert all(layout.choose("US", rng).split("-")[0] in ("weur", "eeur") for _ in range(40))


def test_locations_with_jurisdiction_is_an_error() -> None:
    with pytest.raises(ValueError, match="both locations and jurisdiction"):
        NodeLayout.build(3, {"wnam": 1}, "eu")


def test_custom_country_lists_come_before_the_builtin_table() -> None:
    layout = NodeLayout.build(2, {"eu": 1, "wnam": 1}, custom_countries={"eu": ["fr", "de"]})
    rng = random.Random(4)
    assert all(layout.choose("FR", rng) == "eu-0" for _ in range(20))
    assert all(layout.choose("US", rng) == "wnam-0" for _ in range(20))
    assert layout.location_of("eu-0") == "eu"
