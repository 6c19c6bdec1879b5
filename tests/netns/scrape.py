"""The daemon's Prometheus endpoint scraped from inside the lab's host namespace."""

from __future__ import annotations

import sys

from vnicbond.lab import Lab

PORT = 9469


def scrape(lab: Lab, port: int = PORT) -> dict[str, float]:
    """Every sample on ``http://127.0.0.1:PORT/metrics`` in the host namespace, keyed
    ``name{label=value,...}`` with the labels sorted."""
    text = lab.ns(lab.host, sys.executable, "-c", (
        "import urllib.request;"
        f"print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', timeout=5).read()"
        ".decode())")).stdout
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values
