"""Where a room's nodes live, and which node a client lands on.

This mirrors the original's ``gen-ids.ts`` exactly (same node ids for the same
options), so a layout tuned for the Cloudflare original spreads the same way
here. The country table is Cloudflare's, as the original ships it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LOCATION_HINTS: tuple[str, ...] = ("wnam", "enam", "sam", "weur", "eeur", "apac", "oc", "afr", "me")
DEFAULT_NODES = 9

# Cloudflare jurisdictions and the location hints that lie inside them.
JURISDICTIONS: Mapping[str, tuple[str, ...]] = {
    "eu": ("weur", "eeur"),
    "fedramp": ("wnam", "enam"),
}

_COUNTRY_TABLE = """
wnam CA US MX
enam BM BS BZ CR CU DM DO SV GD GT HT HN JM NI PA PR KN LC VC TT VG
sam AR BO BR CL CO EC FK GY PY PE SR UY VE
weur AT BE FR DE IE IT LU MT MC NL PT SM ES CH GB
eeur AL BY BA BG HR CZ HU MD ME MK PL RO RS RU SK SI UA
apac AF AM AU AZ BD BT BN KH CN CY FJ GE IN ID IR IQ IL JP JO KZ KW KG LA LB MY MV MN MM NP NZ
apac KP KR OM PK PG PH QA SA SG LK SY TJ TH TL TR TM AE UZ VN YE
oc AS CK FJ PF GU KI MH FM NR NC NZ NU NF MP PW PG PN WS SB TK TO TV VU WF
afr DZ AO BJ BW BF BI CV CM CF TD KM CG CD CI DJ EG GQ ER SZ ET GA GM GH GN GW KE LS LR LY MG MW
afr ML MR MU YT MA MZ NA NE NG RW RE SH ST SN SC SL SO ZA SS SD TZ TG TN UG ZM ZW
me AE BH EG IR IQ IL JO KW LB OM PS QA SA SY YE
"""


def _parse_country_table(text: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {}
    for line in text.split("\n"):
        if line:
            location, *countries = line.split()
            table.setdefault(location, []).extend(countries)
    return {location: tuple(countries) for location, countries in table.items()}


COUNTRIES_BY_LOCATION: Mapping[str, tuple[str, ...]] = _parse_country_table(_COUNTRY_TABLE)

# Cloudflare's code for Tor exits: no country at all.
TOR_COUNTRY = "T1"


def generate_ids(
    n: int = DEFAULT_NODES, weights: Mapping[str, float] | None = None
) -> dict[str, list[str]]:
    """Node ids per location, exactly as the original's ``generateIdsGroupedByLocation``.

    Each location gets ``max(floor(weight / total * n), 1)`` nodes and what is
    left of ``n`` is dealt out round-robin in config order, so ``n`` is a
    minimum, not an exact count.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if not weights or sum(weights.values()) == 0:
        weights = dict.fromkeys(LOCATION_HINTS, 1)
    locations = list(weights)
    total = sum(weights.values())
    allocation = {loc: max(math.floor(weights[loc] / total * n), 1) for loc in locations}
    remaining = n - sum(allocation.values())
    index = 0
    while remaining > 0:
        allocation[locations[index % len(locations)]] += 1
        remaining -= 1
        index += 1
    return {loc: [f"{loc}-{i}" for i in range(allocation[loc])] for loc in locations}


def location_of_country(
    country: str | None,
    custom: Mapping[str, Sequence[str]] | None = None,
) -> str | None:
    """The location a country belongs to.

    Lists from the config come first (they are the operator's explicit
    choice, e.g. ``eu = ["FR", "DE"]``); then the first hint whose built-in
    list has the country, as the original does.
    """
    if not country:
        return None
    country = country.strip().upper()
    if country == TOR_COUNTRY:
        return None
    for location, custom_list in (custom or {}).items():
        if country in custom_list:
            return location
    for location, countries in COUNTRIES_BY_LOCATION.items():
        if country in countries:
            return location
    return None


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """A binding's node ids grouped by location, and the rule that picks one for a client."""

    nodes_by_location: Mapping[str, tuple[str, ...]]
    custom_countries: Mapping[str, tuple[str, ...]]
    locations: tuple[str, ...]

    @classmethod
    def build(
        cls,
        nodes: int = DEFAULT_NODES,
        locations: Mapping[str, float] | None = None,
        jurisdiction: str | None = None,
        custom_countries: Mapping[str, Sequence[str]] | None = None,
    ) -> NodeLayout:
        if locations and jurisdiction:
            raise ValueError("You can't specify both locations and jurisdiction")
        if jurisdiction is not None:
            locations = dict.fromkeys(JURISDICTIONS[jurisdiction], 1)
        ids = generate_ids(nodes, locations)
        return cls(
            locations=tuple(ids),
            nodes_by_location={loc: tuple(node_ids) for loc, node_ids in ids.items()},
            custom_countries={
                loc: tuple(c.upper() for c in countries)
                for loc, countries in (custom_countries or {}).items()
            },
        )

    @property
    def node_ids(self) -> list[str]:
        return [node for nodes in self.nodes_by_location.values() for node in nodes]

    def location_of(self, node_id: str) -> str:
        return node_id.rsplit("-", 1)[0]

    def location_for(self, country: str | None, rng: random.Random) -> str:
        """The location for a client from ``country``: its own if configured, else any."""
        location = location_of_country(country, self.custom_countries)
        if location is None or location not in self.nodes_by_location:
            location = rng.choice(self.locations)
        return location

    def choose(self, country: str | None, rng: random.Random) -> str:
        """A node id for a client from ``country``: a random node of its location."""
        return rng.choice(self.nodes_by_location[self.location_for(country, rng)])
