"""Reading the Prometheus metrics a test homeserver serves at /_synapse/metrics."""

from __future__ import annotations

from collections.abc import Callable

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.servers import TestHomeserver

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(hs: TestHomeserver) -> tuple[str, Samples]:
    """The exposition text, and every sample by (name, labels)."""
    r = requests.get(hs.base_url + "/_synapse/metrics", timeout=30)
    assert r.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return r.text, samples


class Delta:
    """How much each sample grew while `act` ran; `text` is the exposition afterwards."""

    def __init__(self, hs: TestHomeserver, act: Callable[[], object]):
        _, self._before = scrape(hs)
        act()
        self.text, self._after = scrape(hs)

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return self._after.get(key, 0.0) - self._before.get(key, 0.0)
