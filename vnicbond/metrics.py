"""The Prometheus endpoint: metric families built from the status document, and its HTTP server.

This module owns

* :class:`StatusCollector`, a ``prometheus_client`` custom collector that builds every family
  afresh on each scrape from a callable returning :meth:`vnicbond.runtime.daemon.Daemon.status`'s
  document (per member: packet, byte and drop counters, drops by reason, probe-socket
  frames by outcome, state, link, probe state; per probe
  target: probes sent and lost; per group: state, carrier, failovers, address moves), and
  registers itself on its own :class:`~prometheus_client.CollectorRegistry`, never the global
  one;
* :class:`RttHistogram`, the probe round-trip-time histogram the daemon feeds with every
  matched probe reply (the status only holds the last RTT per target), kept in plain dicts
  and bounded to the label sets the status shows;
* :func:`threadsafe_source`, which lets the HTTP server thread read the status on the event
  loop's thread;
* :func:`start_server` / its ``stop()`` for the HTTP endpoint (the ``metrics: {listen: ...}``
  setting is parsed by :func:`vnicbond.config.parse_listen`).

Metrics are off unless the configuration names a listen address; nothing here reads the
configuration or touches the datapath.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from vnicbond.core.detector import DISABLED, FAILED, OK, UNKNOWN
from vnicbond.core.model import GroupState, MemberState

log = logging.getLogger(__name__)

PREFIX = "vnicbond"
#: The state label values each one-hot gauge always reports (an unexpected value is added).
MEMBER_STATES: tuple[str, ...] = tuple(s.value for s in MemberState)
PROBE_STATES: tuple[str, ...] = (OK, FAILED, DISABLED, UNKNOWN)
GROUP_STATES: tuple[str, ...] = tuple(s.value for s in GroupState)
#: Upper bounds of the RTT histogram's buckets, in seconds (+Inf is implied).
RTT_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)
#: Member counters: status field -> (metric name without ``_total``, help).
MEMBER_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("tx_packets", "member_tx_packets", "Packets sent through the member."),
    ("rx_packets", "member_rx_packets", "Packets received through the member."),
    ("tx_bytes", "member_tx_bytes", "Bytes sent through the member."),
    ("rx_bytes", "member_rx_bytes", "Bytes received through the member."),
    ("tx_dropped", "member_tx_dropped", "Packets dropped on the way out through the member."),
    ("rx_dropped", "member_rx_dropped", "Packets dropped on the way in through the member."),
)

StatusSource = Callable[[], Mapping[str, Any]]
_Key = tuple[str, str, str]  # (group, member, target)


class RttHistogram:
    """Probe round-trip times per (group, member, target), as a cumulative histogram.

    The daemon calls :meth:`observe` from its event loop; the collector reads it from the
    HTTP server's thread, hence the lock. Bucket counts are kept per bucket (not cumulative)
    and made cumulative when read.
    """

    def __init__(self, buckets: Iterable[float] = RTT_BUCKETS) -> None:
        self.buckets: tuple[float, ...] = tuple(sorted(float(b) for b in buckets))
        self._lock = threading.Lock()
        # One count per finite bucket plus one for +Inf.
        self._counts: dict[_Key, list[int]] = {}
        self._sums: dict[_Key, float] = {}

    def observe(self, group: str, member: str, target: str, rtt_ms: float) -> None:
        """Record one matched probe reply's round-trip time, in milliseconds."""
        seconds = max(float(rtt_ms), 0.0) / 1000.0
        slot = bisect.bisect_left(self.buckets, seconds)  # first bound >= seconds, or +Inf
        key = (group, member, str(target))
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0] * (len(self.buckets) + 1)
                self._sums[key] = 0.0
            counts[slot] += 1
            self._sums[key] += seconds

    def retain(self, keys: Iterable[_Key]) -> None:
        """Forget every (group, member, target) not in ``keys``."""
        keep = set(keys)
        with self._lock:
            for key in [k for k in self._counts if k not in keep]:
                del self._counts[key]
                del self._sums[key]

    def snapshot(self) -> dict[_Key, tuple[list[tuple[str, float]], float]]:
        """Per label set: cumulative ``(le, count)`` buckets ending with ``+Inf``, and the sum."""
        bounds = [_le(b) for b in self.buckets] + ["+Inf"]
        out: dict[_Key, tuple[list[tuple[str, float]], float]] = {}
        with self._lock:
            for key, counts in self._counts.items():
                running = 0
                cumulative = []
                for le, n in zip(bounds, counts, strict=True):
                    running += n
                    cumulative.append((le, float(running)))
                out[key] = (cumulative, self._sums[key])
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._counts)


class StatusCollector(Collector):
    """Builds the metric families from the status document on every scrape.

    ``status_source`` returns the document of :meth:`vnicbond.runtime.daemon.Daemon.status`. The
    collector registers itself on ``registry`` (a new :class:`CollectorRegistry` unless one
    is given; never pass the global one), available as :attr:`registry`.
    """

    def __init__(
        self,
        status_source: StatusSource,
        rtt: RttHistogram | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.status_source = status_source
        self.rtt = rtt if rtt is not None else RttHistogram()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        status = self.status_source()
        groups = list(status.get("groups") or [])
        m_labels = ["group", "member"]
        t_labels = ["group", "member", "target"]

        counters = {
            field: CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=m_labels)
            for field, name, doc in MEMBER_COUNTERS
        }
        member_state = GaugeMetricFamily(
            f"{PREFIX}_member_state", "1 for the member's current state, 0 for the others.",
            labels=[*m_labels, "state"])
        link_up = GaugeMetricFamily(
            f"{PREFIX}_member_link_up", "1 if the member's link is up.", labels=m_labels)
        probe_state = GaugeMetricFamily(
            f"{PREFIX}_member_probe_state",
            "1 for the member's current probe state, 0 for the others.",
            labels=[*m_labels, "state"])
        sent = CounterMetricFamily(
            f"{PREFIX}_probes_sent", "Probes sent by the member to the target.", labels=t_labels)
        lost = CounterMetricFamily(
            f"{PREFIX}_probes_lost", "Probes to the target that got no valid reply in time.",
            labels=t_labels)
        rtt = HistogramMetricFamily(
            f"{PREFIX}_probe_rtt_seconds", "Round-trip time of answered probes.",
            labels=t_labels)
        group_state = GaugeMetricFamily(
            f"{PREFIX}_group_state", "1 for the group's current state, 0 for the others.",
            labels=["group", "state"])
        carrier = GaugeMetricFamily(
            f"{PREFIX}_group_carrier", "1 if the group's virtual NIC has carrier.",
            labels=["group"])
        failovers = CounterMetricFamily(
            f"{PREFIX}_group_failovers", "Failovers in the group.", labels=["group"])
        moves = CounterMetricFamily(
            f"{PREFIX}_group_address_moves", "Data addresses moved between members.",
            labels=["group"])
        drops = CounterMetricFamily(
            f"{PREFIX}_member_drops",
            "Frames a member received or was to send that were not passed on, by reason.",
            labels=[*m_labels, "reason"])
        tap_drops = CounterMetricFamily(
            f"{PREFIX}_tap_drops",
            "Frames from the host that no member was given, by reason.",
            labels=["group", "reason"])
        fdt = GaugeMetricFamily(
            f"{PREFIX}_group_fdt_seconds",
            "The failure detection time in use (raised above the configured one while the "
            "targets are too slow for it).", labels=["group"])
        srtt = GaugeMetricFamily(
            f"{PREFIX}_probe_srtt_seconds",
            "Smoothed round-trip time of the target (Jacobson/Karels).", labels=t_labels)
        macs = GaugeMetricFamily(
            f"{PREFIX}_macs", "Guest MACs behind the TAP, learned or registered.",
            labels=["group"])
        evictions = CounterMetricFamily(
            f"{PREFIX}_mac_evictions",
            "Learned guest MACs pushed out by newer ones past mac_learning.limit.",
            labels=["group"])
        control = CounterMetricFamily(
            f"{PREFIX}_control_frames",
            "Frames on a member's probe sockets (probe replies, ARP/NDP for its test "
            "address), by what became of them.",
            labels=[*m_labels, "outcome"])

        shown: set[_Key] = set()
        for g in groups:
            gname = str(g.get("name", ""))
            for m in g.get("members") or []:
                labels = [gname, str(m.get("name", ""))]
                for field, family in counters.items():
                    value = m.get(field)
                    if value is not None:  # absent while the datapath is not running
                        family.add_metric(labels, float(value))
                _one_hot(member_state, labels, MEMBER_STATES, m.get("state"))
                link_up.add_metric(labels, 1.0 if m.get("link") == "up" else 0.0)
                _one_hot(probe_state, labels, PROBE_STATES, m.get("probe"))
                for reason, value in sorted((m.get("drops") or {}).items()):
                    drops.add_metric([*labels, str(reason)], float(value))
                for outcome, value in sorted((m.get("control") or {}).items()):
                    control.add_metric([*labels, str(outcome)], float(value))
            for t in g.get("targets") or []:
                key = (gname, str(t.get("member", "")), str(t.get("target", "")))
                shown.add(key)
                sent.add_metric(list(key), float(t.get("sent") or 0))
                lost.add_metric(list(key), float(t.get("lost") or 0))
                if t.get("srtt_ms") is not None:
                    srtt.add_metric(list(key), float(t["srtt_ms"]) / 1000.0)
            _one_hot(group_state, [gname], GROUP_STATES, g.get("state"))
            carrier.add_metric([gname], 1.0 if g.get("carrier") else 0.0)
            fdt.add_metric([gname], float(g.get("fdt_ms") or 0) / 1000.0)
            failovers.add_metric([gname], float(g.get("failovers") or 0))
            moves.add_metric([gname], float(g.get("address_moves") or 0))
            macs.add_metric([gname], float(g.get("macs_learned") or 0))
            evictions.add_metric([gname], float(g.get("mac_evictions") or 0))
            for reason, value in sorted((g.get("tap_drops") or {}).items()):
                tap_drops.add_metric([gname, str(reason)], float(value))

        self.rtt.retain(shown)
        for key, (buckets, total) in sorted(self.rtt.snapshot().items()):
            rtt.add_metric(list(key), buckets, total)

        yield from counters.values()
        yield from (member_state, link_up, probe_state, sent, lost, rtt, srtt, fdt)
        yield from (group_state, carrier, failovers, moves, drops, tap_drops, control)
        yield from (macs, evictions)


def _one_hot(family: GaugeMetricFamily, labels: list[str], states: tuple[str, ...],
             current: object) -> None:
    """One sample per state: 1 for ``current``, 0 for the others (an unknown one is added)."""
    cur = None if current is None else str(current)
    values = list(states) if cur is None or cur in states else [*states, cur]
    for state in values:
        family.add_metric([*labels, state], 1.0 if state == cur else 0.0)


def _le(bound: float) -> str:
    """A bucket bound as the ``le`` label prometheus_client itself writes (``0.1``, ``1.0``)."""
    return floatToGoString(bound)


def threadsafe_source(
    loop: asyncio.AbstractEventLoop, status: StatusSource, timeout: float = 2.0
) -> StatusSource:
    """Wrap ``status`` so that the HTTP server's thread runs it on ``loop``'s thread.

    The returned callable blocks the calling thread (never the loop) for at most ``timeout``
    seconds and raises :class:`TimeoutError` after that, which fails the scrape.
    """

    async def call() -> Mapping[str, Any]:
        return status()

    def source() -> Mapping[str, Any]:
        return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout)

    return source


def start_server(listen: tuple[str, int], registry: CollectorRegistry) -> Callable[[], None]:
    """Serve ``registry`` over HTTP on ``listen`` in a daemon thread; return ``stop()``.

    ``stop()`` shuts the server down, closes its socket and joins its thread; calling it
    again does nothing. Raises :class:`OSError` if the address cannot be bound.
    """
    addr, port = listen
    started = start_http_server(port, addr, registry=registry)
    if not isinstance(started, tuple):  # prometheus_client before (server, thread)
        log.warning("this prometheus_client cannot stop its server; it runs until exit")

        def no_stop() -> None:
            return None

        return no_stop

    server, thread = started
    log.info("metrics: serving on %s", _format(addr, port))
    lock = threading.Lock()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        with lock:
            if stopped:
                return
            stopped = True
        server.shutdown()
        server.server_close()
        with contextlib.suppress(RuntimeError):
            thread.join(timeout=5.0)

    return stop


def _format(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"

