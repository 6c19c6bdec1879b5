"""Start-up, clean exit and recovery after a crash leave the system as it was found."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
import yaml

from vnicbond.lab import DATA_V4, Lab, wait_ping


def snapshot(lab: Lab) -> dict[str, object]:
    """What the daemon may change in the host namespace."""
    links = lab.ns(lab.host, "ip", "-o", "link", "show").stdout
    return {
        "links": sorted(
            (line.split(":")[1].strip().split("@")[0], "UP" in line.split("<")[1].split(">")[0])
            for line in links.splitlines()),
        "tables": lab.ns(lab.host, "nft", "list", "tables").stdout,
        "sysctls": [lab.ns(lab.host, "sysctl", "-n", f"net.ipv6.conf.{lab.member(i)}.disable_ipv6"
                           ).stdout for i in range(lab.members)],
        "addresses": lab.ns(lab.host, "ip", "-o", "addr", "show").stdout,
        "routes": lab.ns(lab.host, "ip", "route", "show").stdout,
    }


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_exit_restores_everything(lab, make_bond, sig):
    before = snapshot(lab)
    bond = make_bond(lab, routes=[{"to": "198.19.0.0/16", "via": "198.18.0.2"}])
    wait_ping(lab, lab.peer, DATA_V4)
    during = snapshot(lab)
    assert during != before and "ipmp0" in str(during["links"])
    assert "198.19.0.0/16 via 198.18.0.2 dev ipmp0" in str(during["routes"])
    assert bond.stop(sig) == 0
    assert snapshot(lab) == before
    assert "Traceback" not in bond.logs()


def test_restart_after_kill_9_cleans_up_and_comes_up(lab, make_bond):
    before = snapshot(lab)
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    assert bond.stop(signal.SIGKILL) == -signal.SIGKILL
    left = snapshot(lab)
    assert "vnicbond_ipmp0" in str(left["tables"])  # what a crash leaves behind
    bond.start()
    assert "dead instance" in bond.logs()
    wait_ping(lab, lab.peer, DATA_V4)
    assert bond.status()["state"] == "ok"
    assert bond.stop() == 0
    assert snapshot(lab) == before


def test_second_instance_on_the_same_socket_is_refused(lab, make_bond):
    bond = make_bond(lab)
    second = lab.ns(lab.host, sys.executable, "-m", "vnicbond", "run", "-c", str(bond.path),
                    check=False, timeout=30)
    assert second.returncode == 1
    assert "another vnicbond" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    assert bond.status()["state"] == "ok"  # the first one is unharmed


BAD_CONFIGS = {
    "unknown key": ({"colour": "blue"}, "groups[0].colour"),
    "bad address": ({"addresses": ["198.18.0.300/24"]}, "groups[0].addresses[0]"),
    "bad duration": ({"failure_detection_time": "fast"}, "groups[0].failure_detection_time"),
    "wrong type": ({"failback": "sometimes"}, "groups[0].failback"),
    "duplicate member": ({"members": [{"name": "m0"}, {"name": "m0"}]}, "groups[0].members[1]"),
    "missing member list": ({"members": None}, "groups[0]"),
    "member that does not exist": ({"members": [{"name": "m0"}, {"name": "m9"}]},
                                   "groups[0].members[1].name"),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_invalid_config_is_refused_and_nothing_changes(lab, make_bond, name):
    override, key = BAD_CONFIGS[name]
    before = snapshot(lab)
    bond = make_bond(lab, start=False)
    config = bond.config
    config["groups"][0].update(override)
    if config["groups"][0]["members"] is None:
        del config["groups"][0]["members"]
    bond.path.write_text(yaml.safe_dump(config))
    for verb in ("check", "run"):
        proc = lab.ns(lab.host, sys.executable, "-m", "vnicbond", verb, "-c", str(bond.path),
                      check=False, timeout=30)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert str(bond.path) in lines[0] and key in lines[0]
    assert snapshot(lab) == before


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.6, 0.9, 1.2])
def test_sigterm_at_any_moment_of_start_up_leaves_nothing(lab, make_bond, delay):
    before = snapshot(lab)
    bond = make_bond(lab, start=False)
    bond.start(wait=False)
    time.sleep(delay)
    status = bond.stop()
    assert status in (0, -signal.SIGTERM), bond.logs()
    assert "Traceback" not in bond.logs()
    assert snapshot(lab) == before
    assert not os.path.exists(bond.socket)
    assert not os.path.exists(os.path.join(os.path.dirname(bond.socket), "ipmp0.state"))
    # and the next start is a normal one
    bond.start()
    assert bond.status()["state"] == "ok"
