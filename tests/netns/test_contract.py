"""What users see, pinned: the ``status --json`` document, the ``events`` lines and objects,
and the lines ``offline``, ``online`` and ``reload`` print, through the real CLI in the lab.

Written against the daemon before issue 10's restructuring, so the restructured daemon can be
checked against it: every key of the status document at every level (in the order it is
printed), the types of the values, and every value a scenario determines; every event the
daemon records for a scripted sequence, as an exact ordered list per step and as printed.
Counters that depend on timing (packets, probe losses, RTTs, flows) are checked for type and
for the sums the documentation promises, never for a value. No assertion depends on timing:
every step waits for the state it causes with ``lab.wait_for``.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from typing import Any

import yaml

from vnicbond.lab import DATA_V4, DATA_V6, PEER_V4, Bond, Lab, wait_ping

# -- the status document's shape ----------------------------------------------------------------
#: Keys in the order ``status --json`` prints them, at every level.
TOP_KEYS = ["pid", "uptime_s", "version", "upgrades", "groups"]
GROUP_KEYS = ["name", "mode", "mtu", "state", "carrier", "fdt_ms", "fdt_configured_ms",
              "failback", "active",
              "failovers", "address_moves", "tap_dropped", "tap_drops", "members", "addresses",
              "targets", "answers_rate_limited", "macs", "macs_learned", "mac_evictions"]
MEMBER_KEYS = ["name", "state", "link", "probe", "reason", "standby", "mac", "flows",
               "flow_buckets", "test_address", "target_mode", "probe_from", "control",
               "tx_packets", "rx_packets",
               "tx_bytes", "rx_bytes", "tx_dropped", "rx_dropped", "rx_filtered", "drops"]
CONTROL_KEYS = ["received", "replies", "answered", "rate_limited", "ignored", "kernel"]
RX_FILTERED = ["inactive", "foreign", "looped", "daemon"]
RX_ERRORS = ["runt", "oversize", "tap_write", "error", "kernel"]
TX_REASONS = ["tx_oversize", "tx_invalid", "tx_congested", "tx_error"]
DROP_KEYS = RX_FILTERED + RX_ERRORS + TX_REASONS
TAP_DROP_KEYS = ["runt", "no_member", "bad_source", "read_error"]
ADDRESS_KEYS = ["address", "member", "source"]
TARGET_KEYS = ["member", "target", "rtt_ms", "srtt_ms", "rttvar_ms", "lost", "sent"]
GUEST_MAC_KEYS = ["mac", "member", "age_s", "source"]
#: Member fields whose values a scenario determines (the rest are counters, and ``flows``,
#: which in load spreading counts whatever the TAP's own stack happened to send).
MEMBER_FIELDS = ["name", "state", "link", "probe", "reason", "standby", "test_address",
                 "target_mode", "probe_from", "mac", "flow_buckets"]
GROUP_FIELDS = ["name", "mode", "state", "carrier", "fdt_ms", "fdt_configured_ms", "failback",
                "active",
                "failovers", "address_moves", "macs", "macs_learned", "mac_evictions"]

#: The group fields with nothing stacked on the TAP: the host's own frames carry the group's MAC.
NO_GUESTS = {"macs": [], "macs_learned": 0, "mac_evictions": 0}

MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
STAMP_RE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) (.*)")
EVENT_KEYS = ["seq", "time", "group", "kind", "member", "state", "old", "cause", "reason"]

TEST_M0 = "198.18.0.21/24"
TEST_M1 = "198.18.0.22/24"
DATA_V4_2 = "198.18.0.11"
V4, V6, V4_2 = f"{DATA_V4}/24", f"{DATA_V6}/64", f"{DATA_V4_2}/24"
GROUP = "ipmp0"
REFUSAL = ("vnicbond: cannot take {} offline: no other member of ipmp0 could carry its "
           "traffic\n")


def is_int(value: object) -> bool:
    return type(value) is int


def vnicbond(lab: Lab, bond: Bond, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``vnicbond`` command as a user runs it in the host namespace."""
    return lab.ns(lab.host, sys.executable, "-m", "vnicbond", *args, "--socket", bond.socket,
                  check=False, timeout=60)


def said(result: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return result.returncode, result.stdout, result.stderr


def nic_mac(lab: Lab, name: str) -> str:
    """The member NIC's own MAC, as ``ip`` reports it."""
    out = lab.ns(lab.host, "ip", "-j", "link", "show", name).stdout
    return str(json.loads(out)[0]["address"])


def check_counters(m: dict[str, Any]) -> None:
    """A member's counters: integers, and the sums the documentation promises."""
    assert list(m["control"]) == CONTROL_KEYS, m["control"]
    assert all(is_int(v) and v >= 0 for v in m["control"].values()), m["control"]
    c = m["control"]
    assert c["received"] == c["replies"] + c["answered"] + c["rate_limited"] + c["ignored"], c
    assert list(m["drops"]) == DROP_KEYS, m["drops"]
    assert all(is_int(v) and v >= 0 for v in m["drops"].values()), m["drops"]
    for key in ("tx_packets", "rx_packets", "tx_bytes", "rx_bytes"):
        assert is_int(m[key]) and m[key] >= 0, (key, m)
    drops = m["drops"]
    assert m["tx_dropped"] == sum(drops[r] for r in TX_REASONS), m
    assert m["rx_dropped"] == sum(drops[r] for r in RX_ERRORS), m
    assert m["rx_filtered"] == sum(drops[r] for r in RX_FILTERED), m


def check_shape(doc: dict[str, Any]) -> dict[str, Any]:
    """Every key and type of the status document; returns its one group."""
    assert list(doc) == TOP_KEYS, list(doc)
    assert is_int(doc["pid"])
    assert type(doc["uptime_s"]) is float and doc["uptime_s"] >= 0
    assert type(doc["version"]) is str and doc["version"]
    assert is_int(doc["upgrades"]) and doc["upgrades"] >= 0
    assert len(doc["groups"]) == 1
    g = doc["groups"][0]
    assert list(g) == GROUP_KEYS, list(g)
    for key in ("name", "mode", "state"):
        assert type(g[key]) is str, (key, g[key])
    for key in ("carrier", "failback"):
        assert type(g[key]) is bool, (key, g[key])
    for key in ("fdt_ms", "fdt_configured_ms", "failovers", "address_moves", "tap_dropped",
                "answers_rate_limited"):
        assert is_int(g[key]) and g[key] >= 0, (key, g[key])
    assert g["active"] is None or type(g["active"]) is str
    assert g["mtu"] == 1500  # the lab's, as configured by default
    assert list(g["tap_drops"]) == TAP_DROP_KEYS, g["tap_drops"]
    assert all(is_int(v) for v in g["tap_drops"].values())
    assert g["tap_dropped"] == sum(g["tap_drops"].values())
    for m in g["members"]:
        assert list(m) == MEMBER_KEYS, list(m)
        for key in ("name", "state", "link", "probe"):
            assert type(m[key]) is str, (key, m)
        assert m["reason"] is None or type(m["reason"]) is str
        assert m["test_address"] is None or type(m["test_address"]) is str
        assert type(m["probe_from"]) is list and all(type(a) is str for a in m["probe_from"])
        assert type(m["standby"]) is bool
        assert MAC_RE.fullmatch(m["mac"]), m["mac"]
        assert is_int(m["flows"]) and is_int(m["flow_buckets"])
        check_counters(m)
    assert g["answers_rate_limited"] == sum(m["control"]["rate_limited"] for m in g["members"])
    for a in g["addresses"]:
        assert list(a) == ADDRESS_KEYS, a
        assert type(a["address"]) is str and (a["member"] is None or type(a["member"]) is str)
        assert a["source"] in ("config", "system"), a
    for t in g["targets"]:
        assert list(t) == TARGET_KEYS, t
        assert type(t["member"]) is str and type(t["target"]) is str
        for key in ("rtt_ms", "srtt_ms", "rttvar_ms"):
            assert t[key] is None or type(t[key]) is float, (key, t)
        assert is_int(t["lost"]) and is_int(t["sent"]) and 0 <= t["lost"] <= t["sent"], t
    for key in ("macs_learned", "mac_evictions"):
        assert is_int(g[key]) and g[key] >= 0, (key, g[key])
    assert g["macs_learned"] == len(g["macs"]), g["macs"]
    for mac in g["macs"]:
        assert list(mac) == GUEST_MAC_KEYS, mac
        assert MAC_RE.fullmatch(mac["mac"]), mac
        assert mac["member"] is None or type(mac["member"]) is str
        assert type(mac["age_s"]) is float and mac["age_s"] >= 0, mac
        assert mac["source"] in ("learned", "registered"), mac
    return g


def status(lab: Lab, bond: Bond) -> dict[str, Any]:
    """``vnicbond status --json``: checked for shape and print format; returns the group."""
    out = vnicbond(lab, bond, "status", "--json")
    assert out.returncode == 0 and out.stderr == "", out
    doc = json.loads(out.stdout)
    assert out.stdout == json.dumps(doc, indent=2) + "\n"  # indented by two, nothing else
    assert doc["pid"] == bond.daemon_pid()
    return check_shape(doc)


def fields(g: dict[str, Any]) -> dict[str, Any]:
    """The values of the group a scenario determines (its counters aside). Every scenario's
    addresses are the configured ones (the TAP's IPv6 link-local address is no data address)."""
    assert [a["source"] for a in g["addresses"]] == ["config"] * len(g["addresses"])
    return {**{k: g[k] for k in GROUP_FIELDS},
            "members": [{k: m[k] for k in MEMBER_FIELDS} for m in g["members"]],
            "addresses": [(a["address"], a["member"]) for a in g["addresses"]],
            "targets": [(t["member"], t["target"]) for t in g["targets"]]}


def member(name: str, state: str, mac: str, *, link: str = "up", probe: str = "disabled",
           reason: str | None = None, test_address: str | None = None,
           flow_buckets: int = 0) -> dict[str, Any]:
    # The scenarios' members with a test address probe the configured targets.
    return {"name": name, "state": state, "link": link, "probe": probe, "reason": reason,
            "standby": False, "test_address": test_address,
            "target_mode": "configured" if test_address else "disabled",
            "probe_from": [test_address.split("/")[0]] if test_address else [], "mac": mac,
            "flow_buckets": flow_buckets}


def probing_group(fdt: str) -> dict[str, Any]:
    return {"failure_detection_time": fdt, "probe": {"targets": [PEER_V4]},
            "members": [{"name": "m0", "test_address": TEST_M0},
                        {"name": "m1", "test_address": TEST_M1}]}


def wait_member(lab: Lab, bond: Bond, name: str, timeout: float = 10.0, **want: Any) -> None:
    lab.wait_for(lambda: all(bond.member(name)[k] == v for k, v in want.items()),
                 timeout=timeout, what=f"{name} to be {want}")


# -- status --json --------------------------------------------------------------------------------
def test_status_json_active_backup_with_probes(lab, make_bond):
    bond = make_bond(lab, **probing_group("300ms"))
    macs = [nic_mac(lab, "m0"), nic_mac(lab, "m1")]
    wait_ping(lab, lab.peer, DATA_V4)
    lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"])
                 and all(t["rtt_ms"] is not None for t in bond.status()["targets"]),
                 timeout=10, what="both members' probes answered")

    def expected(state: str, active: str, failovers: int, moves: int,
                 m0: dict[str, Any], m1: dict[str, Any]) -> dict[str, Any]:
        return {"name": GROUP, "mode": "active-backup", "state": state, "carrier": True,
                "fdt_ms": 300, "fdt_configured_ms": 300, "failback": True, "active": active,
                "failovers": failovers,
                "address_moves": moves, "members": [m0, m1],
                "addresses": [(V4, active), (V6, active)],
                "targets": [("m0", PEER_V4), ("m1", PEER_V4)], **NO_GUESTS}

    m0_ok = member("m0", "active", macs[0], probe="ok", test_address=TEST_M0)
    m1_ok = member("m1", "standby", macs[1], probe="ok", test_address=TEST_M1)
    g = status(lab, bond)
    assert fields(g) == expected("ok", "m0", 0, 0, m0_ok, m1_ok)
    assert all(t["rtt_ms"] is not None and t["sent"] > 0 for t in g["targets"]), g["targets"]
    for m in g["members"]:  # both probe: replies matched, nothing rate-limited
        assert m["control"]["replies"] > 0 and m["control"]["rate_limited"] == 0, m
    assert g["answers_rate_limited"] == 0
    assert [m["flows"] for m in g["members"]] == [0, 0]  # active-backup hashes no flows
    assert g["members"][0]["tx_packets"] > 0  # at least the start-up announcements

    # The active member's cable is pulled: traffic moves, the member says why.
    lab.link_down(0)
    lab.wait_for(lambda: bond.active() == "m1", timeout=5, what="failover to m1")
    g = status(lab, bond)
    m0_down = member("m0", "failed", macs[0], link="down", probe="failed", reason="link down",
                     test_address=TEST_M0)
    assert fields(g) == expected("degraded", "m1", 1, 2, m0_down,
                                 {**m1_ok, "state": "active"})
    # A member whose link is down sends no probes: its counts stand still.
    sent = g["targets"][0]["sent"]
    assert status(lab, bond)["targets"][0]["sent"] == sent

    # Plugged back: repaired by 10 answered probes, and takes traffic back (failback).
    lab.link_up(0)
    lab.wait_for(lambda: bond.active() == "m0", timeout=10, what="failback to m0")
    assert fields(status(lab, bond)) == expected("ok", "m0", 2, 4, m0_ok, m1_ok)

    # The standby is cut silently: its probes fail, its link stays up.
    lab.cut(1)
    wait_member(lab, bond, "m1", state="failed")
    g = status(lab, bond)
    m1_cut = member("m1", "failed", macs[1], probe="failed",
                    reason="probes lost on every target", test_address=TEST_M1)
    assert fields(g) == expected("degraded", "m0", 2, 4, m0_ok, m1_cut)
    assert g["targets"][1]["lost"] >= 5, g["targets"]
    lab.uncut(1)
    wait_member(lab, bond, "m1", state="standby")
    assert fields(status(lab, bond)) == expected("ok", "m0", 2, 4, m0_ok, m1_ok)


def test_status_json_load_spread_on_three_members(lab3, make_bond):
    lab = lab3
    # FDT 3.5 s: a link-only member (no probing: probe.transitive off) waits 10 intervals
    # (5 s) after its link comes back, long enough to see it waiting.
    bond = make_bond(lab, mode="load-spread", failure_detection_time="3500ms",
                     probe={"transitive": False},
                     addresses=[V4, V4_2, V6])
    macs = [nic_mac(lab, f"m{i}") for i in range(3)]
    for address in (DATA_V4, DATA_V4_2, DATA_V6):
        wait_ping(lab, lab.peer, address)

    def expected(state: str, failovers: int, moves: int, members: list[dict[str, Any]],
                 hosts: tuple[str, str, str]) -> dict[str, Any]:
        return {"name": GROUP, "mode": "load-spread", "state": state, "carrier": True,
                "fdt_ms": 3500, "fdt_configured_ms": 3500, "failback": True, "active": "m0",
                "failovers": failovers,
                "address_moves": moves, "members": members,
                "addresses": list(zip((V4, V4_2, V6), hosts, strict=True)), "targets": [],
                **NO_GUESTS}

    # The 4096 flow buckets by rendezvous hashing of the member names (fixed numbers).
    all_up = [member("m0", "active", macs[0], flow_buckets=1419),
              member("m1", "active", macs[1], flow_buckets=1273),
              member("m2", "active", macs[2], flow_buckets=1404)]
    g = status(lab, bond)
    assert fields(g) == expected("ok", 0, 0, all_up, ("m0", "m1", "m2"))
    assert sum(m["flow_buckets"] for m in g["members"]) == 4096

    # m1's cable is pulled: its address goes to the member with the fewest (m0 before m2),
    # its buckets to the others; nobody became active, so no failover is counted.
    lab.link_down(1)
    wait_member(lab, bond, "m1", state="failed")
    down = [member("m0", "active", macs[0], flow_buckets=2038),
            member("m1", "failed", macs[1], link="down", reason="link down"),
            member("m2", "active", macs[2], flow_buckets=2058)]
    assert fields(status(lab, bond)) == expected("degraded", 0, 1, down, ("m0", "m0", "m2"))

    # Plugged back: a link-only member waits for its link to stay up, then rejoins and its
    # address goes home (failback).
    lab.link_up(1)
    wait_member(lab, bond, "m1", link="up")
    g = status(lab, bond)
    assert g["members"][1]["state"] == "failed"
    assert g["members"][1]["reason"] == "link up, waiting to stay up"
    wait_member(lab, bond, "m1", timeout=20, state="active")
    assert fields(status(lab, bond)) == expected("ok", 1, 2, all_up, ("m0", "m1", "m2"))


# -- events ---------------------------------------------------------------------------------------
Event = tuple[str, str, str | None, str, str | None, str | None]


def event(kind: str, member: str | None, state: str, old: str | None,
          cause: str | None) -> Event:
    """(group, kind, member, state, old, cause) as the daemon reports an event of ipmp0."""
    return (GROUP, kind, member, state, old, cause)


def stamp(t: float) -> str:
    """How ``events`` prints an event's time: local time, milliseconds truncated."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def recorded(lab: Lab, bond: Bond) -> tuple[list[dict[str, Any]], list[str]]:
    """Every event, from ``events --json`` and from ``events`` (checked to agree)."""
    js = vnicbond(lab, bond, "events", "--json")
    text = vnicbond(lab, bond, "events")
    assert js.returncode == 0 and js.stderr == "", js
    assert text.returncode == 0 and text.stderr == "", text
    objects = [json.loads(line) for line in js.stdout.splitlines()]
    for line, obj in zip(js.stdout.splitlines(), objects, strict=True):
        assert line == json.dumps(obj)  # one compact object per line
    lines = text.stdout.splitlines()
    assert len(lines) == len(objects), (lines, objects)
    rest = []
    for line, obj in zip(lines, objects, strict=True):
        assert list(obj) == EVENT_KEYS, obj
        assert is_int(obj["seq"]) and type(obj["time"]) is float
        m = STAMP_RE.fullmatch(line)
        assert m, line
        assert m.group(1) == stamp(obj["time"]), (line, obj)
        rest.append(m.group(2))
    assert [o["seq"] for o in objects] == list(range(1, len(objects) + 1))
    times = [o["time"] for o in objects]
    assert times == sorted(times)
    return objects, rest


def test_events_and_admin_lines_for_a_scripted_sequence(lab, make_bond):
    # FDT 600 ms rather than 300: a false probe failure under CI load would add events.
    bond = make_bond(lab, **probing_group("600ms"))
    wait_ping(lab, lab.peer, DATA_V4)
    lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"]),
                 timeout=10, what="both members' probes answered")
    steps: list[list[Event]] = []

    def step(expected: list[Event]) -> None:
        """The events since the previous step are exactly ``expected``, in this order.

        Each step's events come out of one decision, so their order is deterministic."""
        objects, _ = recorded(lab, bond)
        done = sum(len(s) for s in steps)
        got = [(o["group"], o["kind"], o["member"], o["state"], o["old"], o["cause"])
               for o in objects[done:]]
        assert got == expected
        steps.append(expected)

    step([event("member", "m0", "active", None, "start"),
          event("member", "m1", "standby", None, "start"),
          event("address", "m0", V4, None, "start"),
          event("address", "m0", V6, None, "start"),
          event("carrier", None, "on", None, None),
          event("group", None, "ok", None, "start")])

    lab.link_down(0)
    lab.wait_for(lambda: bond.active() == "m1", timeout=5, what="failover to m1")
    step([event("member", "m0", "failed", "active", "link"),
          event("member", "m1", "active", "standby", "link"),
          event("address", "m1", V4, "m0", "link"),
          event("address", "m1", V6, "m0", "link"),
          event("group", None, "degraded", "ok", "link")])

    lab.link_up(0)  # repaired by its probes, then failback
    lab.wait_for(lambda: bond.active() == "m0", timeout=10, what="failback to m0")
    step([event("member", "m0", "active", "failed", "probe"),
          event("member", "m1", "standby", "active", "probe"),
          event("address", "m0", V4, "m1", "probe"),
          event("address", "m0", V6, "m1", "probe"),
          event("group", None, "ok", "degraded", "probe")])

    # offline: the active member's traffic moves first; the printed lines.
    assert said(vnicbond(lab, bond, "offline", "m0")) == (0, "m0 is now offline\n", "")
    step([event("member", "m0", "offline", "active", "admin"),
          event("member", "m1", "active", "standby", "admin"),
          event("address", "m1", V4, "m0", "admin"),
          event("address", "m1", V6, "m0", "admin"),
          event("group", None, "degraded", "ok", "admin")])
    assert said(vnicbond(lab, bond, "offline", "m0")) == (0, "m0 was already offline\n", "")
    assert said(vnicbond(lab, bond, "offline", "m1")) == (1, "", REFUSAL.format("m1"))
    assert said(vnicbond(lab, bond, "offline", "m9")) == (
        1, "", "vnicbond: no member 'm9' in any group\n")
    assert said(vnicbond(lab, bond, "online", "m9")) == (
        1, "", "vnicbond: no member 'm9' in any group\n")
    assert bond.active() == "m1"

    # online: m0's health was kept while it was offline, so it is active again at once
    # (failback), and says so.
    assert said(vnicbond(lab, bond, "online", "m0")) == (0, "m0 is now active\n", "")
    step([event("member", "m0", "active", "offline", "admin"),
          event("member", "m1", "standby", "active", "admin"),
          event("address", "m0", V4, "m1", "admin"),
          event("address", "m0", V6, "m1", "admin"),
          event("group", None, "ok", "degraded", "admin")])
    assert said(vnicbond(lab, bond, "online", "m0")) == (0, "m0 was already active\n", "")
    assert said(vnicbond(lab, bond, "online", "m1")) == (0, "m1 was already standby\n", "")

    # reload, nothing changed; then one that adds a data address.
    assert said(vnicbond(lab, bond, "reload")) == (0, "ipmp0: reloaded\n", "")
    step([event("config", None, "reloaded", None, "reload")])
    bond.config["groups"][0]["addresses"] = [V4, V6, V4_2]
    bond.path.write_text(yaml.safe_dump(bond.config))
    assert said(vnicbond(lab, bond, "reload")) == (
        0, f"ipmp0: reloaded (addresses added: {V4_2})\n", "")
    step([event("address", "m0", V4_2, None, "reload"),
          event("config", None, "reloaded", None, "reload")])
    wait_ping(lab, lab.peer, DATA_V4_2)

    # The whole record as `events` prints it, time stamps aside.
    _, lines = recorded(lab, bond)
    assert lines == [
        "ipmp0 member m0 - -> active cause=start",
        "ipmp0 member m1 - -> standby cause=start",
        "ipmp0 address 198.18.0.10/24 - -> m0 cause=start",
        "ipmp0 address 2001:db8::10/64 - -> m0 cause=start",
        "ipmp0 carrier on",
        "ipmp0 group - -> ok cause=start",
        "ipmp0 member m0 active -> failed cause=link",
        "ipmp0 member m1 standby -> active cause=link",
        "ipmp0 address 198.18.0.10/24 m0 -> m1 cause=link",
        "ipmp0 address 2001:db8::10/64 m0 -> m1 cause=link",
        "ipmp0 group ok -> degraded cause=link",
        "ipmp0 member m0 failed -> active cause=probe",
        "ipmp0 member m1 active -> standby cause=probe",
        "ipmp0 address 198.18.0.10/24 m1 -> m0 cause=probe",
        "ipmp0 address 2001:db8::10/64 m1 -> m0 cause=probe",
        "ipmp0 group degraded -> ok cause=probe",
        "ipmp0 member m0 active -> offline cause=admin",
        "ipmp0 member m1 standby -> active cause=admin",
        "ipmp0 address 198.18.0.10/24 m0 -> m1 cause=admin",
        "ipmp0 address 2001:db8::10/64 m0 -> m1 cause=admin",
        "ipmp0 group ok -> degraded cause=admin",
        "ipmp0 member m0 offline -> active cause=admin",
        "ipmp0 member m1 active -> standby cause=admin",
        "ipmp0 address 198.18.0.10/24 m1 -> m0 cause=admin",
        "ipmp0 address 2001:db8::10/64 m1 -> m0 cause=admin",
        "ipmp0 group degraded -> ok cause=admin",
        "ipmp0 config reloaded cause=reload",
        "ipmp0 address 198.18.0.11/24 - -> m0 cause=reload",
        "ipmp0 config reloaded cause=reload",
    ]
    # The counters the sequence determines: four members became active, eight address moves.
    g = status(lab, bond)
    assert (g["failovers"], g["address_moves"]) == (4, 8)
    assert [(a["address"], a["member"]) for a in g["addresses"]] == [
        (V4, "m0"), (V6, "m0"), (V4_2, "m0")]
    # events --follow prints the same lines, then keeps going until stopped.
    follower = lab.popen(lab.host, sys.executable, "-m", "vnicbond", "events", "--follow",
                         "--socket", bond.socket)
    try:
        first = first_lines(follower, len(lines))
    finally:
        follower.terminate()
        follower.communicate(timeout=10)
    assert [STAMP_RE.fullmatch(line).group(2) for line in first] == lines  # type: ignore[union-attr]


def first_lines(proc: subprocess.Popen[str], n: int, timeout: float = 20.0) -> list[str]:
    """The first ``n`` lines a process prints (read from its pipe, never blocking past
    ``timeout``: a follower that printed fewer would otherwise hang the test)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while data.count(b"\n") < n:
        left = deadline - time.monotonic()
        assert left > 0, f"fewer than {n} lines in {timeout} s: {data!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"the follower exited after {data!r}"
            data += chunk
    return data.decode().splitlines()[:n]
