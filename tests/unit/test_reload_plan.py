"""What a reload may change, and what it adds and removes (vnicbond.core.reload, no I/O)."""

from __future__ import annotations

from ipaddress import ip_interface
from typing import Any

import pytest
import yaml

from vnicbond.config import Config, parse_config
from vnicbond.core.reload import GroupChanges, group_changes, needs_restart


def config(**group: Any) -> Config:
    g: dict[str, Any] = {"name": "ipmp0", "addresses": ["198.18.0.10/24", "2001:db8::10/64"],
                         "members": [{"name": "m0"}, {"name": "m1"}]}
    top: dict[str, Any] = {}
    for key in ("control", "metrics", "log_level"):
        if key in group:
            top[key] = group.pop(key)
    g.update(group)
    return parse_config(yaml.safe_dump({**top, "groups": [g]}))


def test_identical_configs_need_no_restart_and_change_nothing() -> None:
    old, new = config(), config()
    assert needs_restart(old, new) is None
    assert group_changes(old.groups[0], new.groups[0]) == GroupChanges((), (), (), ())


@pytest.mark.parametrize(("change", "named"), [
    ({"mode": "load-spread"}, "ipmp0's mode"),
    ({"mac": "02:00:00:00:00:42"}, "ipmp0's mac"),
    ({"routes": [{"to": "198.19.0.0/16", "via": "198.18.0.1"}]}, "ipmp0's routes"),
    ({"name": "ipmp1"}, "the groups"),
    ({"control": {"socket": "/tmp/other.sock"}}, "control.socket"),
    ({"metrics": {"listen": "127.0.0.1:9555"}}, "metrics"),
])
def test_changes_that_would_recreate_the_tap_or_socket_need_a_restart(
        change: dict[str, Any], named: str) -> None:
    assert needs_restart(config(), config(**change)) == named


@pytest.mark.parametrize("change", [
    {"failure_detection_time": "2s"},
    {"failback": False},
    {"announce": {"count": 5, "interval": "50ms"}},
    {"members": [{"name": "m0"}, {"name": "m1", "standby": True}]},
    {"members": [{"name": "m0"}, {"name": "m1"}, {"name": "m2"}]},
    {"addresses": ["198.18.0.11/24"]},
    {"log_level": "debug"},
    {"mtu": 9000},
])
def test_changes_a_reload_applies(change: dict[str, Any]) -> None:
    assert needs_restart(config(), config(**change)) is None


def test_members_and_addresses_added_and_removed_in_configuration_order() -> None:
    old = config(members=[{"name": "m0"}, {"name": "m1"}, {"name": "m2"}],
                 addresses=["198.18.0.10/24", "198.18.0.11/24"])
    new = config(members=[{"name": "m3"}, {"name": "m1"}, {"name": "m4"}],
                 addresses=["198.18.0.12/24", "198.18.0.10/24", "2001:db8::5/64"])
    changes = group_changes(old.groups[0], new.groups[0])
    assert changes.members_added == ("m3", "m4")
    assert changes.members_removed == ("m0", "m2")
    assert changes.addresses_added == (ip_interface("198.18.0.12/24"),
                                       ip_interface("2001:db8::5/64"))
    assert changes.addresses_removed == (ip_interface("198.18.0.11/24"),)
    assert changes.summary() == {
        "members_added": ["m3", "m4"], "members_removed": ["m0", "m2"],
        "addresses_added": ["198.18.0.12/24", "2001:db8::5/64"],
        "addresses_removed": ["198.18.0.11/24"]}


def test_a_changed_prefix_length_is_a_removal_and_an_addition() -> None:
    changes = group_changes(config(addresses=["198.18.0.10/24"]).groups[0],
                            config(addresses=["198.18.0.10/25"]).groups[0])
    assert changes.addresses_added == (ip_interface("198.18.0.10/25"),)
    assert changes.addresses_removed == (ip_interface("198.18.0.10/24"),)
