"""The operator's tools: admin offline/online, events, status views."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from tests.netns.scrape import scrape
from vnicbond.lab import DATA_V4, PEER_V4, ping_result, ping_stream, wait_ping


def test_offline_under_a_10ms_ping_loses_at_most_one(lab, make_bond):
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    ping = ping_stream(lab, lab.peer, DATA_V4, 0.01, 200)
    time.sleep(0.5)
    out = bond.cli("offline", "m0")
    assert out.returncode == 0 and out.stdout.strip() == "m0 is now offline", out
    sent, received, text = ping_result(ping)
    assert sent - received <= 1, text
    st = bond.status()
    assert st["active"] == "m1"
    assert {m["name"]: m["state"] for m in st["members"]} == {"m0": "offline", "m1": "active"}
    # The last usable member cannot go: refused, status 1, one clear line.
    refused = bond.cli("offline", "m1")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "vnicbond: cannot take m1 offline: no other member of ipmp0 could carry its traffic"]
    assert bond.active() == "m1"
    # Online brings m0 back through the repair path (link-only: it stays up 10 intervals).
    assert bond.cli("online", "m0").returncode == 0
    lab.wait_for(lambda: bond.active() == "m0", timeout=5, what="m0 back (failback)")
    assert bond.cli("offline", "m9").returncode == 1


def test_events_name_the_cause(lab, make_bond):
    group = {"failure_detection_time": "300ms", "probe": {"targets": [PEER_V4]},
             "members": [{"name": "m0", "test_address": "198.18.0.21/24"},
                         {"name": "m1", "test_address": "198.18.0.22/24"}]}
    bond = make_bond(lab, **group)
    wait_ping(lab, lab.peer, DATA_V4)
    lab.wait_for(lambda: all(m["probe"] == "ok" for m in bond.status()["members"]), timeout=5,
                 what="probes")
    follower = subprocess.Popen([sys.executable, "-m", "vnicbond", "events", "--follow",
                                 "--socket", bond.socket], stdout=subprocess.PIPE, text=True)
    try:
        lab.link_down(1)  # a link pull on the standby
        lab.wait_for(lambda: bond.member("m1")["state"] == "failed", timeout=3, what="m1")
        lab.link_up(1)
        lab.wait_for(lambda: bond.member("m1")["state"] == "standby", timeout=5, what="m1")
        lab.cut(0)  # a silent cut of the active member
        lab.wait_for(lambda: bond.active() == "m1", timeout=3, what="probe failover")
        assert bond.cli("offline", "m1").returncode == 1  # m0 is failed: refused
        lab.uncut(0)
        lab.wait_for(lambda: bond.active() == "m0", timeout=5, what="m0 repaired")
        assert bond.cli("offline", "m1").returncode == 0
        time.sleep(0.5)
    finally:
        follower.terminate()
        out, _ = follower.communicate(timeout=10)
    events = bond.request("events")
    member = [(e["member"], e["state"], e["cause"]) for e in events if e["kind"] == "member"]
    assert ("m1", "failed", "link") in member
    assert ("m0", "failed", "probe") in member
    assert ("m1", "offline", "admin") in member
    lines = [line for line in out.splitlines() if line.strip()]
    assert any("member m1 standby -> failed cause=link" in line for line in lines), out
    assert any("member m0 active -> failed cause=probe" in line for line in lines), out
    assert any("member m1 standby -> offline cause=admin" in line for line in lines), out
    as_json = bond.cli("events", "--json", check=True).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in as_json] == [e["seq"] for e in events]


def test_status_views(lab, make_bond):
    bond = make_bond(lab, members=[{"name": "m0", "test_address": "198.18.0.21/24"},
                                   {"name": "m1"}], probe={"targets": [PEER_V4]})
    wait_ping(lab, lab.peer, DATA_V4)
    groups = bond.cli("status", "groups", check=True).stdout.splitlines()
    assert groups[0].split() == ["GROUP", "MODE", "STATE", "FDT", "MEMBERS"]
    assert groups[1].split() == ["ipmp0", "active-backup", "ok", "1s", "m0", "(m1)"]
    addresses = bond.cli("status", "addresses", check=True).stdout.splitlines()
    assert addresses[0].split() == ["ADDRESS", "STATE", "GROUP", "INBOUND", "OUTBOUND",
                                    "SOURCE"]
    assert addresses[1].split() == [f"{DATA_V4}/24", "up", "ipmp0", "m0", "m0", "config"]
    lab.link_down(0)
    lab.wait_for(lambda: bond.active() == "m1", timeout=3, what="failover")
    groups = bond.cli("status", "groups", check=True).stdout.splitlines()
    assert groups[1].split() == ["ipmp0", "active-backup", "degraded", "1s", "[m0]", "m1"]
    # m1, active, probed from the data address, having no test address of its own.
    targets = bond.cli("status", "targets", check=True).stdout.splitlines()
    assert targets[2].split() == ["m1", "ipmp0", "configured", DATA_V4, PEER_V4]
    lab.link_up(0)
    lab.wait_for(lambda: bond.active() == "m0", timeout=5, what="failback to m0")
    targets = bond.cli("status", "targets", check=True).stdout.splitlines()
    assert targets[0].split() == ["MEMBER", "GROUP", "MODE", "PROBE_FROM", "TARGETS"]
    assert targets[1].split() == ["m0", "ipmp0", "configured", "198.18.0.21", PEER_V4]
    assert targets[2].split() == ["m1", "ipmp0", "transitive", "-", "member:m0"]
    for view in ("groups", "members", "addresses", "targets"):
        out = bond.cli("status", view, check=True).stdout
        assert max(len(line) for line in out.splitlines()) <= 80
    probes = bond.cli("status", "probes", "--seconds", "1", "--interval", "0.2", check=True)
    lines = probes.stdout.splitlines()
    assert any(f"m0  {PEER_V4}" in line and line.endswith(("ms", ")")) for line in lines), lines


def test_malformed_control_requests_leave_the_daemon_serving(lab, make_bond):
    import socket

    bond = make_bond(lab)
    for payload in (b"not json\n", b"[1, 2]\n", b'{"cmd": 5}\n', b"x" * 200_000,
                    b'{"cmd": "status"', b"\xff\xfe\n", b'{"cmd": "offline"}\n'):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(bond.socket)
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
                s.recv(65536)
            except OSError:
                pass  # the daemon may drop a client that sends garbage
    half_open = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half_open.connect(bond.socket)
    half_open.sendall(b'{"cmd": "sta')  # and then stalls
    try:
        assert bond.status()["state"] == "ok"  # others are served meanwhile
    finally:
        half_open.close()
    assert bond.proc.poll() is None
    assert "Traceback" not in bond.logs()


def test_metrics_endpoint_scrapes_and_counters_grow(lab, make_bond):
    group = {"failure_detection_time": "300ms", "probe": {"targets": [PEER_V4]},
             "members": [{"name": "m0", "test_address": "198.18.0.21/24"},
                         {"name": "m1", "test_address": "198.18.0.22/24"}]}
    bond = make_bond(lab, start=False, **group)
    bond.config["metrics"] = {"listen": "127.0.0.1:9469"}
    import yaml

    bond.path.write_text(yaml.safe_dump(bond.config))
    bond.start()
    wait_ping(lab, lab.peer, DATA_V4)
    before = scrape(lab)
    key = "vnicbond_member_tx_bytes_total{group=ipmp0,member=m0}"
    assert before["vnicbond_member_state{group=ipmp0,member=m0,state=active}"] == 1
    assert before["vnicbond_group_carrier{group=ipmp0}"] == 1
    sent, received, _ = ping_result(ping_stream(lab, lab.peer, DATA_V4, 0.01, 50))
    assert sent == received == 50
    time.sleep(0.5)
    after = scrape(lab)
    assert after[key] > before[key]
    rtt_count = "vnicbond_probe_rtt_seconds_count{group=ipmp0,member=m0,target=198.18.0.2}"
    assert after[rtt_count] > before.get(rtt_count, 0) > 0
    sent_key = "vnicbond_probes_sent_total{group=ipmp0,member=m0,target=198.18.0.2}"
    assert after[sent_key] > before[sent_key]
    assert bond.stop() == 0
