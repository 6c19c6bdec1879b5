"""The Prometheus collector, RTT histogram, listen parsing and HTTP server (no root), and the
guest MACs' metrics (``vnicbond_macs``, ``vnicbond_mac_evictions_total``)."""

from __future__ import annotations

import asyncio
import copy
import socket
import threading
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vnicbond.config import parse_listen
from vnicbond.metrics import (
    RTT_BUCKETS,
    RttHistogram,
    StatusCollector,
    start_server,
    threadsafe_source,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def member(name: str, state: str, link: str = "up", probe: str = "ok", n: int = 1,
           counters: bool = True) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, "state": state, "link": link, "probe": probe,
                         "reason": None, "standby": False, "mac": "02:00:00:00:00:01",
                         "flows": 0, "flow_buckets": 0, "test_address": None}
    if counters:
        m.update(tx_packets=10 * n, rx_packets=20 * n, tx_bytes=1000 * n, rx_bytes=2000 * n,
                 tx_dropped=n, rx_dropped=2 * n)
    return m


def fake_status() -> dict[str, Any]:
    return {
        "pid": 1234,
        "uptime_s": 5.0,
        "groups": [
            {
                "name": "bond0", "mode": "active-standby", "state": "degraded", "carrier": True,
                "fdt_ms": 10000, "failback": True, "active": ["eth0"], "failovers": 3,
                "address_moves": 7, "tap_dropped": 0,
                "members": [member("eth0", "active", n=1),
                            member("eth1", "failed", link="down", probe="failed", n=2)],
                "addresses": [],
                "targets": [
                    {"member": "eth0", "target": "192.0.2.1", "rtt_ms": 0.4, "lost": 1,
                     "sent": 50},
                    {"member": "eth0", "target": "192.0.2.2", "rtt_ms": None, "lost": 50,
                     "sent": 50},
                    {"member": "eth1", "target": "192.0.2.1", "rtt_ms": 0.3, "lost": 0,
                     "sent": 9},
                ],
                "answers_rate_limited": 0,
            },
            {
                "name": "bond1", "mode": "active-active", "state": "failed", "carrier": False,
                "fdt_ms": 10000, "failback": True, "active": [], "failovers": 0,
                "address_moves": 0, "tap_dropped": 0,
                "members": [member("eth2", "offline", probe="disabled", counters=False)],
                "addresses": [], "targets": [], "answers_rate_limited": 0,
            },
        ],
    }


class Source:
    """A mutable status source, counting its calls."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return self.status


def scrape(registry: CollectorRegistry) -> tuple[dict[str, str], Samples]:
    """Family name -> type, and (sample name, labels) -> value, from the text format."""
    text = generate_latest(registry).decode()
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in samples, key
            samples[key] = s.value
    return types, samples


def lbl(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def with_name(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@pytest.fixture
def source() -> Source:
    return Source(fake_status())


@pytest.fixture
def collector(source: Source) -> StatusCollector:
    return StatusCollector(source)


def test_own_registry_and_no_collect_at_registration(source: Source) -> None:
    c = StatusCollector(source)
    assert isinstance(c.registry, CollectorRegistry)
    assert source.calls == 0
    other = StatusCollector(source)
    assert other.registry is not c.registry
    reg = CollectorRegistry()
    assert StatusCollector(source, registry=reg).registry is reg


def test_family_names_and_types(collector: StatusCollector) -> None:
    types, _ = scrape(collector.registry)
    counters = [f"vnicbond_member_{d}_{what}" for d in ("tx", "rx")
                for what in ("packets", "bytes", "dropped")]
    counters += ["vnicbond_probes_sent", "vnicbond_probes_lost", "vnicbond_group_failovers",
                 "vnicbond_group_address_moves"]
    for name in counters:  # the parser names a counter family without its _total
        assert types[name] == "counter", name
    for name in ("vnicbond_member_state", "vnicbond_member_link_up",
                 "vnicbond_member_probe_state", "vnicbond_group_state",
                 "vnicbond_group_carrier"):
        assert types[name] == "gauge", name
    assert types["vnicbond_probe_rtt_seconds"] == "histogram"
    text = generate_latest(collector.registry).decode()
    assert "# TYPE vnicbond_member_tx_bytes_total counter" in text
    assert "_created" not in text


def test_member_counters_follow_status(collector: StatusCollector, source: Source) -> None:
    _, samples = scrape(collector.registry)
    for name, field in (("tx_packets", "tx_packets"), ("rx_bytes", "rx_bytes"),
                        ("tx_dropped", "tx_dropped"), ("rx_dropped", "rx_dropped"),
                        ("rx_packets", "rx_packets"), ("tx_bytes", "tx_bytes")):
        got = with_name(samples, f"vnicbond_member_{name}_total")
        # eth2 has no datapath counters: no sample rather than a false zero
        assert got == {lbl(group="bond0", member="eth0"): member("x", "active", n=1)[field],
                       lbl(group="bond0", member="eth1"): member("x", "active", n=2)[field]}
    source.status["groups"][0]["members"][0]["tx_bytes"] = 123456
    _, samples = scrape(collector.registry)
    assert samples[("vnicbond_member_tx_bytes_total",
                    lbl(group="bond0", member="eth0"))] == 123456


def test_member_state_one_hot(collector: StatusCollector) -> None:
    _, samples = scrape(collector.registry)
    state = with_name(samples, "vnicbond_member_state")
    expected = {("bond0", "eth0"): "active", ("bond0", "eth1"): "failed",
                ("bond1", "eth2"): "offline"}
    assert len(state) == 4 * len(expected)
    for (g, m), current in expected.items():
        for s in ("active", "standby", "failed", "offline"):
            assert state[lbl(group=g, member=m, state=s)] == (1.0 if s == current else 0.0)

    probe = with_name(samples, "vnicbond_member_probe_state")
    expected = {("bond0", "eth0"): "ok", ("bond0", "eth1"): "failed",
                ("bond1", "eth2"): "disabled"}
    assert len(probe) == 4 * len(expected)
    for (g, m), current in expected.items():
        for s in ("ok", "failed", "disabled", "unknown"):
            assert probe[lbl(group=g, member=m, state=s)] == (1.0 if s == current else 0.0)

    link = with_name(samples, "vnicbond_member_link_up")
    assert link == {lbl(group="bond0", member="eth0"): 1.0,
                    lbl(group="bond0", member="eth1"): 0.0,
                    lbl(group="bond1", member="eth2"): 1.0}


def test_unexpected_state_is_reported(collector: StatusCollector, source: Source) -> None:
    source.status["groups"][0]["members"][0]["state"] = "weird"
    _, samples = scrape(collector.registry)
    state = with_name(samples, "vnicbond_member_state")
    assert state[lbl(group="bond0", member="eth0", state="weird")] == 1.0
    assert state[lbl(group="bond0", member="eth0", state="active")] == 0.0


def test_group_metrics(collector: StatusCollector, source: Source) -> None:
    _, samples = scrape(collector.registry)
    gstate = with_name(samples, "vnicbond_group_state")
    assert gstate == {
        lbl(group="bond0", state="ok"): 0.0, lbl(group="bond0", state="degraded"): 1.0,
        lbl(group="bond0", state="failed"): 0.0, lbl(group="bond1", state="ok"): 0.0,
        lbl(group="bond1", state="degraded"): 0.0, lbl(group="bond1", state="failed"): 1.0}
    assert with_name(samples, "vnicbond_group_carrier") == {lbl(group="bond0"): 1.0,
                                                            lbl(group="bond1"): 0.0}
    assert with_name(samples, "vnicbond_group_failovers_total") == {lbl(group="bond0"): 3.0,
                                                                    lbl(group="bond1"): 0.0}
    assert with_name(samples, "vnicbond_group_address_moves_total") == {
        lbl(group="bond0"): 7.0, lbl(group="bond1"): 0.0}

    source.status["groups"][0]["failovers"] = 4
    source.status["groups"][0]["address_moves"] = 9
    _, samples = scrape(collector.registry)
    assert samples[("vnicbond_group_failovers_total", lbl(group="bond0"))] == 4.0
    assert samples[("vnicbond_group_address_moves_total", lbl(group="bond0"))] == 9.0


def test_guest_mac_metrics(collector: StatusCollector, source: Source) -> None:
    """The guest MACs behind each group's TAP (learned and registered), and the learned ones
    pushed out past the limit; a status without them (no guests yet) reads as zero."""
    source.status["groups"][0].update(macs_learned=5, mac_evictions=12)
    types, samples = scrape(collector.registry)
    assert types["vnicbond_macs"] == "gauge"
    assert types["vnicbond_mac_evictions"] == "counter"
    assert with_name(samples, "vnicbond_macs") == {lbl(group="bond0"): 5.0,
                                                   lbl(group="bond1"): 0.0}
    assert with_name(samples, "vnicbond_mac_evictions_total") == {lbl(group="bond0"): 12.0,
                                                                  lbl(group="bond1"): 0.0}
    source.status["groups"][0].update(macs_learned=3, mac_evictions=14)
    _, samples = scrape(collector.registry)
    assert samples[("vnicbond_macs", lbl(group="bond0"))] == 3.0
    assert samples[("vnicbond_mac_evictions_total", lbl(group="bond0"))] == 14.0


def test_probe_counters(collector: StatusCollector) -> None:
    _, samples = scrape(collector.registry)
    assert with_name(samples, "vnicbond_probes_sent_total") == {
        lbl(group="bond0", member="eth0", target="192.0.2.1"): 50.0,
        lbl(group="bond0", member="eth0", target="192.0.2.2"): 50.0,
        lbl(group="bond0", member="eth1", target="192.0.2.1"): 9.0}
    assert with_name(samples, "vnicbond_probes_lost_total") == {
        lbl(group="bond0", member="eth0", target="192.0.2.1"): 1.0,
        lbl(group="bond0", member="eth0", target="192.0.2.2"): 50.0,
        lbl(group="bond0", member="eth1", target="192.0.2.1"): 0.0}


def test_rtt_histogram(source: Source) -> None:
    rtt = RttHistogram()
    c = StatusCollector(source, rtt)
    observations = [0.05, 0.3, 0.3, 2.0, 7.5, 40.0, 2000.0]  # ms; the last is past 1 s
    for ms in observations:
        rtt.observe("bond0", "eth0", "192.0.2.1", ms)
    rtt.observe("bond0", "eth1", "192.0.2.1", 0.1)  # exactly on a bound: le is inclusive
    _, samples = scrape(c.registry)
    labels = {"group": "bond0", "member": "eth0", "target": "192.0.2.1"}

    buckets = {dict(k)["le"]: v for k, v in with_name(samples,
               "vnicbond_probe_rtt_seconds_bucket").items() if dict(k)["member"] == "eth0"}
    bounds = [float(le) for le in buckets]
    assert bounds == sorted(bounds)
    assert bounds[:-1] == list(RTT_BUCKETS) and buckets["+Inf"] == len(observations)
    for le, count in buckets.items():
        assert count == sum(1 for ms in observations if ms / 1000 <= float(le)), le
    values = list(buckets.values())
    assert values == sorted(values)  # cumulative
    assert samples[("vnicbond_probe_rtt_seconds_count", lbl(**labels))] == len(observations)
    assert samples[("vnicbond_probe_rtt_seconds_sum", lbl(**labels))] == pytest.approx(
        sum(observations) / 1000)

    eth1 = lbl(group="bond0", member="eth1", target="192.0.2.1", le="0.0001")
    assert samples[("vnicbond_probe_rtt_seconds_bucket", eth1)] == 1.0
    # No observations for eth0 -> 192.0.2.2: no histogram for it
    assert not any(dict(k).get("target") == "192.0.2.2"
                   for k in with_name(samples, "vnicbond_probe_rtt_seconds_count"))


def test_vanished_label_sets_vanish(source: Source) -> None:
    rtt = RttHistogram()
    c = StatusCollector(source, rtt)
    rtt.observe("bond0", "eth0", "192.0.2.1", 1.0)
    rtt.observe("bond0", "eth1", "192.0.2.1", 1.0)
    rtt.observe("bond9", "ethX", "198.51.100.1", 1.0)  # never in the status
    _, samples = scrape(c.registry)
    assert len(rtt) == 2
    assert not any(dict(k).get("group") == "bond9" for (_, k) in samples)

    status = copy.deepcopy(source.status)
    g = status["groups"][0]
    g["members"] = [m for m in g["members"] if m["name"] != "eth1"]
    g["targets"] = [t for t in g["targets"] if t["member"] != "eth1"]
    del status["groups"][1]
    source.status = status
    _, samples = scrape(c.registry)
    assert len(rtt) == 1
    assert not any(dict(k).get("member") == "eth1" for (_, k) in samples)
    assert not any(dict(k).get("group") == "bond1" for (_, k) in samples)
    assert samples[("vnicbond_probe_rtt_seconds_count",
                    lbl(group="bond0", member="eth0", target="192.0.2.1"))] == 1.0

    # a target dropped from a surviving member loses its histogram and counters
    g["targets"] = [t for t in g["targets"] if t["target"] != "192.0.2.1"]
    _, samples = scrape(c.registry)
    assert len(rtt) == 0
    assert not any(n.startswith("vnicbond_probe_rtt_seconds") for (n, _) in samples)
    assert not any(dict(k).get("target") == "192.0.2.1" for (_, k) in samples)


def test_empty_status() -> None:
    c = StatusCollector(lambda: {"pid": 1, "uptime_s": 0.0, "groups": []})
    types, samples = scrape(c.registry)
    assert samples == {}
    assert "vnicbond_member_state" in types


def test_threadsafe_source_runs_on_the_loop() -> None:
    seen: list[threading.Thread] = []

    def status() -> dict[str, Any]:
        seen.append(threading.current_thread())
        return fake_status()

    async def main() -> None:
        src = threadsafe_source(asyncio.get_running_loop(), status)
        c = StatusCollector(src)
        text = await asyncio.to_thread(generate_latest, c.registry)
        assert b"vnicbond_member_state" in text

    asyncio.run(main())
    assert seen == [threading.main_thread()]


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9469", ("127.0.0.1", 9469)),
    ("0.0.0.0:1", ("0.0.0.0", 1)),
    ("[::1]:9469", ("::1", 9469)),
    ("[::]:65535", ("::", 65535)),
    (" 10.0.0.1:80 ", ("10.0.0.1", 80)),
])
def test_parse_listen_good(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", [
    "", "9469", "127.0.0.1", "127.0.0.1:", ":9469", "127.0.0.1:0", "127.0.0.1:65536",
    "127.0.0.1:-1", "127.0.0.1:http", "localhost:9469", "::1:9469", "[::1]", "[::1]9469",
    "[127.0.0.1]:9469", "[nope]:9469", "256.1.1.1:9469", "127.0.0.1:\uff19\uff14\uff16\uff19",
])
def test_parse_listen_bad(text: str) -> None:
    with pytest.raises(ValueError, match="expected ADDRESS:PORT"):
        parse_listen(text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_server_serves_and_stops(source: Source) -> None:
    c = StatusCollector(source)
    port = free_port()
    stop = start_server(("127.0.0.1", port), c.registry)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
            body = resp.read().decode()
    finally:
        stop()
    families = {f.name for f in text_string_to_metric_families(body)}
    assert {"vnicbond_member_tx_bytes", "vnicbond_probe_rtt_seconds",
            "vnicbond_group_state"} <= families
    # nothing from the global registry (process_*, python_gc_*)
    assert not any(n.startswith(("process_", "python_")) for n in families)

    stop()  # a second stop is harmless
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    # the port is free again
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_start_server_port_in_use(collector: StatusCollector) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(OSError):
            start_server(("127.0.0.1", s.getsockname()[1]), collector.registry)
