"""Unit tests for vnicbond.config (YAML -> frozen dataclasses, validation, system checks)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from ipaddress import ip_address, ip_interface, ip_network
from pathlib import Path

import pytest

from vnicbond.config import (
    Announce,
    Config,
    ConfigError,
    ControlConfig,
    GroupConfig,
    MemberConfig,
    Probe,
    Route,
    check_system,
    default_mac,
    format_mac,
    load_config,
    parse_config,
    parse_duration_ms,
)

# Line numbers matter: the error tests below refer to them.
FULL = """\
control:
  socket: /run/vnicbond/test.sock
log_level: debug
groups:
  - name: ipmp0
    mode: active-backup
    mtu: 9000
    mac: 02:00:00:00:00:10
    addresses: [198.18.0.10/24, 2001:db8::10/64]
    routes:
      - {to: default, via: 198.18.0.254}
      - {to: 10.20.0.0/16, via: 198.18.0.1}
      - {to: "2001:db8:1::/48"}
    failure_detection_time: 250ms
    failback: false
    announce: {count: 5, interval: 20ms}
    probe:
      method: arp
      targets: [198.18.0.2, 198.18.0.3]
    members:
      - name: m0
        test_address: 198.18.0.21/24
      - name: m1
        test_address: 198.18.0.22/24
        standby: true
  - name: ipmp1
    addresses: [198.19.0.10/24]
    members:
      - name: m2
"""

FULL_EXPECTED_GROUPS = (
    GroupConfig(
        name="ipmp0",
        mode="active-backup",
        mtu=9000,
        mac=b"\x02\x00\x00\x00\x00\x10",
        addresses=(ip_interface("198.18.0.10/24"), ip_interface("2001:db8::10/64")),
        routes=(
            Route(to=ip_network("0.0.0.0/0"), via=ip_address("198.18.0.254")),
            Route(to=ip_network("10.20.0.0/16"), via=ip_address("198.18.0.1")),
            Route(to=ip_network("2001:db8:1::/48"), via=None),
        ),
        failure_detection_time_ms=250,
        failback=False,
        announce=Announce(count=5, interval_ms=20),
        probe=Probe(method="arp", targets=(ip_address("198.18.0.2"), ip_address("198.18.0.3"))),
        members=(
            MemberConfig(name="m0", test_address=ip_interface("198.18.0.21/24"), standby=False),
            MemberConfig(name="m1", test_address=ip_interface("198.18.0.22/24"), standby=True),
        ),
    ),
    GroupConfig(
        name="ipmp1",
        mac=default_mac("ipmp1"),
        addresses=(ip_interface("198.19.0.10/24"),),
        members=(MemberConfig(name="m2"),),
    ),
)

# The smallest valid file: line 3 is the addresses line, line 5 the member's name.
MINIMAL = """\
groups:
  - name: ipmp0
    addresses: [198.18.0.10/24]
    members:
      - name: m0
"""


def group_doc(*extra: str, members: str = "      - name: m0\n") -> str:
    """MINIMAL with extra group lines (each already indented) at line 4 onwards."""
    lines = "".join(f"{line}\n" for line in extra)
    return (
        "groups:\n"
        "  - name: ipmp0\n"
        "    addresses: [198.18.0.10/24, 2001:db8::10/64]\n"
        f"{lines}"
        "    members:\n"
        f"{members}"
    )


def parse_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "lab.yaml")
    return info.value


def assert_error(text: str, line: int, key: str, fragment: str) -> ConfigError:
    """The text fails with a one-line message 'lab.yaml:LINE: KEY: ...FRAGMENT...'."""
    error = parse_error(text)
    rendered = str(error)
    assert len(rendered.splitlines()) == 1, rendered
    assert error.path == "lab.yaml"
    assert error.line == line, rendered
    assert error.key == key, rendered
    prefix = f"lab.yaml:{line}: {key}: " if key else f"lab.yaml:{line}: "
    assert rendered.startswith(prefix), rendered
    assert fragment in error.message, rendered
    assert rendered == prefix + error.message
    return error


# --------------------------------------------------------------------------- valid files


def test_full_file_parses_to_exact_dataclasses() -> None:
    config = parse_config(FULL, "lab.yaml")
    expected = Config(
        path="lab.yaml",
        control=ControlConfig(socket="/run/vnicbond/test.sock"),
        log_level="debug",
        groups=FULL_EXPECTED_GROUPS,
    )
    assert config == expected
    # Types, not just equal values (an IPv4Interface never equals an IPv6 one etc.).
    assert type(config.groups[0].addresses[1]).__name__ == "IPv6Interface"
    assert type(config.groups[0].routes[2].to).__name__ == "IPv6Network"
    assert isinstance(config.groups[0].mac, bytes)


def test_full_file_records_key_lines() -> None:
    config = parse_config(FULL, "lab.yaml")
    assert config.key_lines["log_level"] == 3
    assert config.key_lines["groups[0].mac"] == 8
    assert config.key_lines["groups[0].routes[1].via"] == 12
    assert config.key_lines["groups[0].members[1].name"] == 23
    assert config.key_lines["groups[1].members[0].name"] == 29


def test_config_is_frozen_and_hashable() -> None:
    config = parse_config(FULL, "lab.yaml")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.log_level = "error"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.groups[0].members[0].standby = True  # type: ignore[misc]
    assert hash(config) == hash(parse_config(FULL, "lab.yaml"))
    assert not hasattr(config.groups[0], "__dict__")  # slots


def test_defaults_when_optional_keys_are_absent() -> None:
    config = parse_config(MINIMAL)
    assert config == Config(
        path="<string>",
        groups=(
            GroupConfig(
                name="ipmp0",
                mac=default_mac("ipmp0"),
                addresses=(ip_interface("198.18.0.10/24"),),
                members=(MemberConfig(name="m0"),),
            ),
        ),
    )
    group = config.groups[0]
    assert config.control.socket == "/run/vnicbond/vnicbond.sock"
    assert config.log_level == "info"
    assert group.mode == "active-backup"
    assert group.mtu == 1500
    assert group.routes == ()
    assert group.failure_detection_time_ms == 1000
    assert group.failback is True
    assert group.announce == Announce(count=3, interval_ms=100)
    assert group.probe == Probe(method="icmp", targets=())
    assert group.members[0].test_address is None
    assert group.members[0].standby is False


def test_empty_sub_mappings_give_defaults() -> None:
    config = parse_config(group_doc("    announce: {}", "    probe: {}") + "control: {}\n")
    assert config.control == ControlConfig()
    assert config.groups[0].announce == Announce()
    assert config.groups[0].probe == Probe()


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("02:00:00:00:00:10", "02:00:00:00:00:10"),
        ("'02:00:00:00:00:10'", "02:00:00:00:00:10"),
        ('"02:00:00:00:00:10"', "02:00:00:00:00:10"),
        # All-decimal octets: YAML 1.1 would read the unquoted form as a base-60 integer.
        ("12:34:56:12:34:56", "12:34:56:12:34:56"),
        ("'12:34:56:12:34:56'", "12:34:56:12:34:56"),
        ("0A:1b:2C:3d:4E:5f", "0a:1b:2c:3d:4e:5f"),
    ],
)
def test_mac_quoted_and_unquoted(spelling: str, expected: str) -> None:
    config = parse_config(group_doc(f"    mac: {spelling}"))
    assert format_mac(config.groups[0].mac) == expected
    assert config.groups[0].mac == bytes.fromhex(expected.replace(":", ""))


@pytest.mark.parametrize(
    ("spelling", "expected_ms"),
    [("300", 300), ("'2s'", 2000), ("1.5s", 1500), ("100ms", 100), ("0.1s", 100)],
)
def test_duration_spellings_in_yaml(spelling: str, expected_ms: int) -> None:
    config = parse_config(group_doc(f"    failure_detection_time: {spelling}"))
    assert config.groups[0].failure_detection_time_ms == expected_ms


def test_yaml_11_oddities_are_plain_strings() -> None:
    # 'no' and 'on' are strings (YAML 1.2 core schema), so they work as interface names.
    text = "groups:\n  - name: 'no'\n    addresses: [10.0.0.1/24]\n    members: [{name: on}]\n"
    config = parse_config(text)
    assert config.groups[0].name == "no"
    assert config.groups[0].members[0].name == "on"
    # Integers are decimal: a leading zero is not octal.
    assert parse_config(group_doc("    mtu: 01500")).groups[0].mtu == 1500


def test_bare_address_gets_host_prefix() -> None:
    text = "groups:\n  - name: g\n    addresses: [198.18.0.10, '2001:db8::10']\n"
    config = parse_config(text + "    members: [{name: m0}]\n")
    assert config.groups[0].addresses == (
        ip_interface("198.18.0.10/32"),
        ip_interface("2001:db8::10/128"),
    )


@pytest.mark.parametrize("addresses", ["", "    addresses: []\n"])
def test_addresses_may_be_absent_or_empty(addresses: str) -> None:
    """A bond whose addresses all come from DHCP, SLAAC or scripts configures none."""
    text = f"groups:\n  - name: g\n{addresses}    members: [{{name: m0}}]\n"
    assert parse_config(text).groups[0].addresses == ()


def test_route_without_addresses_is_on_link_or_via_a_v6_link_local() -> None:
    """With no addresses, only routes that need no address of the group are accepted."""
    text = ("groups:\n  - name: g\n    routes: [{to: 10.2.0.0/16}, "
            "{to: '2001:db8:9::/48', via: 'fe80::1'}]\n    members: [{name: m0}]\n")
    routes = parse_config(text).groups[0].routes
    assert [r.via for r in routes] == [None, ip_address("fe80::1")]


def test_routes_variants() -> None:
    config = parse_config(
        group_doc(
            "    routes:",
            "      - {to: default, via: '2001:db8::1'}",
            "      - {to: 10.1.0.0/16, via: 198.18.0.1}",
            "      - {to: 10.2.0.0/16}",
            "      - {to: '2001:db8:9::/48', via: 'fe80::1'}",
        )
    )
    assert config.groups[0].routes == (
        Route(to=ip_network("::/0"), via=ip_address("2001:db8::1")),
        Route(to=ip_network("10.1.0.0/16"), via=ip_address("198.18.0.1")),
        Route(to=ip_network("10.2.0.0/16")),
        # IPv6 link-local gateways are always on-link.
        Route(to=ip_network("2001:db8:9::/48"), via=ip_address("fe80::1")),
    )


def test_icmp_probe_accepts_ipv6_targets() -> None:
    config = parse_config(group_doc("    probe: {targets: ['2001:db8::2', 198.18.0.2]}"))
    assert config.groups[0].probe == Probe(
        method="icmp", targets=(ip_address("2001:db8::2"), ip_address("198.18.0.2"))
    )


def test_announce_bounds_are_inclusive() -> None:
    low = parse_config(group_doc("    announce: {count: 0, interval: 1ms}")).groups[0]
    high = parse_config(group_doc("    announce: {count: 100, interval: 10s}")).groups[0]
    assert low.announce == Announce(count=0, interval_ms=1)
    assert high.announce == Announce(count=100, interval_ms=10_000)


def test_mtu_bounds_are_inclusive() -> None:
    assert parse_config(group_doc("    mtu: 68")).groups[0].mtu == 68
    assert parse_config(group_doc("    mtu: 65535")).groups[0].mtu == 65535


def test_fifteen_character_interface_name_is_fine() -> None:
    name = "a" * 15
    text = f"groups:\n  - name: {name}\n    addresses: [10.0.0.1/24]\n    members: [{{name: m0}}]\n"
    assert parse_config(text).groups[0].name == name


# --------------------------------------------------------------------------- errors


def test_config_error_format_and_attributes() -> None:
    error = ConfigError(
        "lab.yaml", 14, "groups[0].members[1].name", "interface 'm7' does not exist"
    )
    assert str(error) == "lab.yaml:14: groups[0].members[1].name: interface 'm7' does not exist"
    assert (error.path, error.line, error.key) == ("lab.yaml", 14, "groups[0].members[1].name")
    assert str(ConfigError("lab.yaml", None, "", "gone")) == "lab.yaml: gone"
    assert str(ConfigError("lab.yaml", 3, "", "bad")) == "lab.yaml:3: bad"
    assert str(ConfigError("a\nb", 1, "k", "x\ny")) == "a\\nb:1: k: x\\ny"
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and copy.line == 14


# (yaml text, line, key path, fragment of the message)
ERROR_CASES: list[tuple[str, str, int, str, str]] = [
    # --- document and top level
    ("top-level list", "- a\n- b\n", 1, "", "top-level document must be a mapping"),
    ("top-level scalar", "\n\nhello\n", 3, "", "top-level document must be a mapping"),
    ("empty document", "", 1, "", "empty"),
    ("missing groups", "log_level: info\n", 1, "groups", "required key is missing"),
    ("empty groups", "log_level: info\ngroups: []\n", 2, "groups", "at least one group"),
    ("groups not a list", "groups: {name: x}\n", 1, "groups", "expected a list"),
    ("group not a mapping", "groups:\n  - ipmp0\n", 2, "groups[0]", "expected a mapping"),
    ("unknown top key", MINIMAL + "colour: red\n", 6, "colour", "unknown key 'colour'"),
    ("log_level bogus", "log_level: loud\n" + MINIMAL, 1, "log_level", "debug, info"),
    ("log_level not str", "log_level: 3\n" + MINIMAL, 1, "log_level", "expected a string"),
    ("control not mapping", "control: /x\n" + MINIMAL, 1, "control", "expected a mapping"),
    ("control null", "control:\n" + MINIMAL, 1, "control", "expected a mapping, got null"),
    ("control unknown", "control: {sock: /x}\n" + MINIMAL, 1, "control.sock", "'socket'"),
    ("socket relative", "control: {socket: x.sock}\n" + MINIMAL, 1, "control.socket", "absolute"),
    (
        "socket not str",
        "control: {socket: 5}\n" + MINIMAL,
        1,
        "control.socket",
        "expected a string",
    ),
    (
        "socket too long",
        f"control: {{socket: /{'s' * 120}}}\n" + MINIMAL,
        1,
        "control.socket",
        "long",
    ),
    # --- generic mapping problems
    (
        "duplicate key",
        group_doc("    mtu: 1500", "    mtu: 9000"),
        5,
        "groups[0].mtu",
        "duplicate key",
    ),
    ("non-string key", group_doc("    1: x"), 4, "groups[0]", "keys must be strings"),
    ("unknown group key", group_doc("    failbak: true"), 4, "groups[0].failbak", "failback"),
    (
        "missing name",
        "groups:\n  - addresses: [10.0.0.1/24]\n    members: [{name: m0}]\n",
        2,
        "groups[0].name",
        "required key is missing",
    ),
    (
        "missing members",
        "log_level: info\ngroups:\n  - name: g\n    addresses: [10.0.0.1/24]\n",
        3,
        "groups[0].members",
        "required key is missing",
    ),
    # --- name
    (
        "name too long",
        MINIMAL.replace("name: ipmp0", "name: abcdefghijklmnop"),
        2,
        "groups[0].name",
        "too long",
    ),
    ("name slash", MINIMAL.replace("name: ipmp0", "name: a/b"), 2, "groups[0].name", "'/'"),
    ("name space", MINIMAL.replace("name: ipmp0", "name: 'a b'"), 2, "groups[0].name", "' '"),
    ("name colon", MINIMAL.replace("name: ipmp0", "name: 'a:b'"), 2, "groups[0].name", "':'"),
    ("name dot", MINIMAL.replace("name: ipmp0", "name: '.'"), 2, "groups[0].name", "not a valid"),
    (
        "name dotdot",
        MINIMAL.replace("name: ipmp0", "name: '..'"),
        2,
        "groups[0].name",
        "not a valid",
    ),
    ("name empty", MINIMAL.replace("name: ipmp0", "name: ''"), 2, "groups[0].name", "empty"),
    (
        "name int",
        MINIMAL.replace("name: ipmp0", "name: 42"),
        2,
        "groups[0].name",
        "expected a string",
    ),
    ("name null", MINIMAL.replace("name: ipmp0", "name:"), 2, "groups[0].name", "got null"),
    # --- mode
    ("mode bogus", group_doc("    mode: round-robin"), 4, "groups[0].mode", "active-backup"),
    # --- mtu
    ("mtu low", group_doc("    mtu: 67"), 4, "groups[0].mtu", "between 68 and 65535"),
    ("mtu high", group_doc("    mtu: 65536"), 4, "groups[0].mtu", "between 68 and 65535"),
    ("mtu string", group_doc("    mtu: '1500'"), 4, "groups[0].mtu", "expected an integer"),
    ("mtu float", group_doc("    mtu: 1500.0"), 4, "groups[0].mtu", "expected an integer"),
    ("mtu bool", group_doc("    mtu: true"), 4, "groups[0].mtu", "expected an integer"),
    # --- mac
    ("mac multicast", group_doc("    mac: 01:00:5e:00:00:01"), 4, "groups[0].mac", "multicast"),
    ("mac broadcast", group_doc("    mac: ff:ff:ff:ff:ff:ff"), 4, "groups[0].mac", "multicast"),
    ("mac zero", group_doc("    mac: 00:00:00:00:00:00"), 4, "groups[0].mac", "all zeros"),
    ("mac short", group_doc("    mac: 02:00:00:00:10"), 4, "groups[0].mac", "invalid MAC"),
    ("mac long", group_doc("    mac: 02:00:00:00:00:10:11"), 4, "groups[0].mac", "invalid MAC"),
    ("mac garbage", group_doc("    mac: hello"), 4, "groups[0].mac", "invalid MAC"),
    ("mac list", group_doc("    mac: [2, 0]"), 4, "groups[0].mac", "expected a MAC"),
    # --- addresses
    (
        "route via with no addresses",
        "groups:\n  - name: g\n    routes: [{to: default, via: 198.18.0.1}]\n"
        "    members: [{name: m0}]\n",
        3,
        "groups[0].routes[0].via",
        "needs an IPv4 address of the group on its network in 'addresses'",
    ),
    (
        "route via v6 with only v4 addresses",
        group_doc("    routes: [{to: default, via: '2001:db8::1'}]").replace(
            ", 2001:db8::10/64", ""),
        4,
        "groups[0].routes[0].via",
        "needs an IPv6 address",
    ),
    (
        "addresses scalar",
        MINIMAL.replace("[198.18.0.10/24]", "198.18.0.10/24"),
        3,
        "groups[0].addresses",
        "expected a list",
    ),
    (
        "address invalid",
        MINIMAL.replace("198.18.0.10/24", "198.18.0.300/24"),
        3,
        "groups[0].addresses[0]",
        "invalid interface address",
    ),
    (
        "address bad prefix",
        MINIMAL.replace("198.18.0.10/24", "198.18.0.10/33"),
        3,
        "groups[0].addresses[0]",
        "invalid interface address",
    ),
    (
        "address duplicate",
        MINIMAL.replace("198.18.0.10/24", "198.18.0.10/24, 198.18.0.10/25"),
        3,
        "groups[0].addresses[1]",
        "already used at groups[0].addresses[0]",
    ),
    (
        "address multicast",
        MINIMAL.replace("198.18.0.10/24", "224.0.0.5/4"),
        3,
        "groups[0].addresses[0]",
        "multicast",
    ),
    (
        "address unspecified",
        MINIMAL.replace("198.18.0.10/24", "0.0.0.0/0"),
        3,
        "groups[0].addresses[0]",
        "unspecified",
    ),
    (
        "address loopback",
        MINIMAL.replace("198.18.0.10/24", "127.0.0.2/8"),
        3,
        "groups[0].addresses[0]",
        "loopback",
    ),
    (
        "address v6 loopback",
        MINIMAL.replace("198.18.0.10/24", "'::1'"),
        3,
        "groups[0].addresses[0]",
        "loopback",
    ),
    (
        "address int",
        MINIMAL.replace("198.18.0.10/24", "10"),
        3,
        "groups[0].addresses[0]",
        "expected an address",
    ),
    (
        "address scope id",
        MINIMAL.replace("198.18.0.10/24", "'fe80::1%eth0/64'"),
        3,
        "groups[0].addresses[0]",
        "scope",
    ),
    # --- routes
    (
        "routes not list",
        group_doc("    routes: {to: default}"),
        4,
        "groups[0].routes",
        "expected a list",
    ),
    (
        "route not mapping",
        group_doc("    routes: [default]"),
        4,
        "groups[0].routes[0]",
        "expected a mapping",
    ),
    (
        "route unknown key",
        group_doc("    routes: [{to: default, gw: 198.18.0.1}]"),
        4,
        "groups[0].routes[0].gw",
        "valid keys: to, via",
    ),
    (
        "route missing to",
        group_doc("    routes:", "      - via: 198.18.0.1"),
        5,
        "groups[0].routes[0].to",
        "required key is missing",
    ),
    (
        "route bad to",
        group_doc("    routes: [{to: everywhere}]"),
        4,
        "groups[0].routes[0].to",
        "invalid route destination",
    ),
    (
        "route host bits",
        group_doc("    routes: [{to: 10.1.2.3/16}]"),
        4,
        "groups[0].routes[0].to",
        "did you mean 10.1.0.0/16",
    ),
    (
        "default without via",
        group_doc("    routes:", "      - to: default"),
        5,
        "groups[0].routes[0].via",
        "needs 'via'",
    ),
    (
        "route family mismatch",
        group_doc("    routes: [{to: 10.0.0.0/8, via: '2001:db8::1'}]"),
        4,
        "groups[0].routes[0].via",
        "IPv6",
    ),
    (
        "route via not on-link",
        group_doc("    routes: [{to: default, via: 10.9.9.9}]"),
        4,
        "groups[0].routes[0].via",
        "not on-link",
    ),
    (
        "route via v6 not on-link",
        group_doc("    routes: [{to: default, via: '2001:db9::1'}]"),
        4,
        "groups[0].routes[0].via",
        "not on-link",
    ),
    (
        "route via own address",
        group_doc("    routes: [{to: default, via: 198.18.0.10}]"),
        4,
        "groups[0].routes[0].via",
        "own addresses",
    ),
    (
        "route via invalid",
        group_doc("    routes: [{to: default, via: gateway}]"),
        4,
        "groups[0].routes[0].via",
        "invalid IP address",
    ),
    (
        "route duplicate",
        group_doc("    routes:", "      - {to: 10.0.0.0/8}", "      - {to: 10.0.0.0/8}"),
        6,
        "groups[0].routes[1].to",
        "duplicate route",
    ),
    # --- failure_detection_time
    (
        "fdt too small",
        group_doc("    failure_detection_time: 99ms"),
        4,
        "groups[0].failure_detection_time",
        "at least 100ms",
    ),
    (
        "fdt int too small",
        group_doc("    failure_detection_time: 50"),
        4,
        "groups[0].failure_detection_time",
        "at least 100ms",
    ),
    (
        "fdt float",
        group_doc("    failure_detection_time: 1.5"),
        4,
        "groups[0].failure_detection_time",
        "no unit",
    ),
    (
        "fdt garbage",
        group_doc("    failure_detection_time: soon"),
        4,
        "groups[0].failure_detection_time",
        "invalid duration",
    ),
    (
        "fdt negative",
        group_doc("    failure_detection_time: -5"),
        4,
        "groups[0].failure_detection_time",
        "negative",
    ),
    (
        "fdt bool",
        group_doc("    failure_detection_time: true"),
        4,
        "groups[0].failure_detection_time",
        "expected a duration",
    ),
    (
        "fdt list",
        group_doc("    failure_detection_time: [1s]"),
        4,
        "groups[0].failure_detection_time",
        "expected a duration",
    ),
    # --- booleans: only real true/false
    ("failback yes", group_doc("    failback: yes"), 4, "groups[0].failback", "expected a boolean"),
    ("failback on", group_doc("    failback: on"), 4, "groups[0].failback", "expected a boolean"),
    (
        "failback quoted",
        group_doc("    failback: 'true'"),
        4,
        "groups[0].failback",
        "expected a boolean",
    ),
    ("failback int", group_doc("    failback: 1"), 4, "groups[0].failback", "expected a boolean"),
    (
        "standby no",
        group_doc(members="      - name: m0\n      - name: m1\n        standby: no\n"),
        7,
        "groups[0].members[1].standby",
        "expected a boolean",
    ),
    # --- announce
    (
        "announce not mapping",
        group_doc("    announce: 3"),
        4,
        "groups[0].announce",
        "expected a mapping",
    ),
    (
        "announce count high",
        group_doc("    announce: {count: 101}"),
        4,
        "groups[0].announce.count",
        "between 0 and 100",
    ),
    (
        "announce count negative",
        group_doc("    announce: {count: -1}"),
        4,
        "groups[0].announce.count",
        "between 0 and 100",
    ),
    (
        "announce interval zero",
        group_doc("    announce: {interval: 0ms}"),
        4,
        "groups[0].announce.interval",
        "at least 1ms",
    ),
    (
        "announce interval long",
        group_doc("    announce: {interval: 11s}"),
        4,
        "groups[0].announce.interval",
        "at most 10s",
    ),
    (
        "announce unknown",
        group_doc("    announce:", "      interval_ms: 5"),
        5,
        "groups[0].announce.interval_ms",
        "did you mean 'interval'",
    ),
    # --- probe
    (
        "probe method bogus",
        group_doc("    probe: {method: ping}"),
        4,
        "groups[0].probe.method",
        "icmp, arp",
    ),
    (
        "probe arp v6 target",
        group_doc("    probe:", "      method: arp", "      targets: [198.18.0.2, '2001:db8::2']"),
        6,
        "groups[0].probe.targets[1]",
        "IPv4",
    ),
    (
        "probe duplicate target",
        group_doc("    probe: {targets: [198.18.0.2, 198.18.0.2]}"),
        4,
        "groups[0].probe.targets[1]",
        "duplicate target",
    ),
    (
        "probe bad target",
        group_doc("    probe: {targets: [198.18.0.2/24]}"),
        4,
        "groups[0].probe.targets[0]",
        "invalid IP address",
    ),
    (
        "probe unspecified target",
        group_doc("    probe: {targets: [0.0.0.0]}"),
        4,
        "groups[0].probe.targets[0]",
        "cannot be a probe target",
    ),
    (
        "probe targets scalar",
        group_doc("    probe: {targets: 198.18.0.2}"),
        4,
        "groups[0].probe.targets",
        "expected a list",
    ),
    # --- members
    (
        "members empty",
        group_doc(members="      []\n").replace("members:\n      []", "members: []"),
        4,
        "groups[0].members",
        "at least one member",
    ),
    (
        "members mapping",
        group_doc(members="      name: m0\n"),
        5,
        "groups[0].members",
        "expected a list",
    ),
    (
        "member not mapping",
        group_doc(members="      - m0\n"),
        5,
        "groups[0].members[0]",
        "expected a mapping",
    ),
    (
        "member missing name",
        group_doc(members="      - standby: false\n"),
        5,
        "groups[0].members[0].name",
        "required key is missing",
    ),
    (
        "member unknown key",
        group_doc(members="      - name: m0\n        weight: 3\n"),
        6,
        "groups[0].members[0].weight",
        "valid keys: name, test_address, standby",
    ),
    (
        "member bad name",
        group_doc(members="      - name: 'm 0'\n"),
        5,
        "groups[0].members[0].name",
        "whitespace",
    ),
    (
        "all standby",
        group_doc(members="      - {name: m0, standby: true}\n      - {name: m1, standby: true}\n"),
        5,
        "groups[0].members",
        "at least one member must not be standby",
    ),
    (
        "member is group",
        group_doc(members="      - name: ipmp0\n"),
        5,
        "groups[0].members[0].name",
        "must differ from the group name",
    ),
    (
        "duplicate member",
        group_doc(members="      - name: m0\n      - name: m0\n"),
        6,
        "groups[0].members[1].name",
        "already a member at groups[0].members[0].name",
    ),
    (
        "test_address is data address",
        group_doc(members="      - name: m0\n        test_address: 198.18.0.10/24\n"),
        6,
        "groups[0].members[0].test_address",
        "already used at groups[0].addresses[0]",
    ),
    (
        "test_address duplicate",
        group_doc(
            members="      - {name: m0, test_address: 198.18.0.20/24}\n"
            "      - {name: m1, test_address: 198.18.0.20/24}\n"
        ),
        6,
        "groups[0].members[1].test_address",
        "already used at groups[0].members[0].test_address",
    ),
    (
        "test_address invalid",
        group_doc(members="      - {name: m0, test_address: nope}\n"),
        5,
        "groups[0].members[0].test_address",
        "invalid interface address",
    ),
    (
        "test_address multicast",
        group_doc(members="      - {name: m0, test_address: 239.1.1.1/8}\n"),
        5,
        "groups[0].members[0].test_address",
        "multicast",
    ),
    # --- across groups
    (
        "duplicate group name",
        MINIMAL + "  - name: ipmp0\n    addresses: [10.1.0.1/24]\n    members: [{name: m9}]\n",
        6,
        "groups[1].name",
        "duplicate group name 'ipmp0'",
    ),
    (
        "member in two groups",
        MINIMAL + "  - name: ipmp1\n    addresses: [10.1.0.1/24]\n    members: [{name: m0}]\n",
        8,
        "groups[1].members[0].name",
        "already a member at groups[0].members[0].name",
    ),
    (
        "group named like a member",
        MINIMAL + "  - name: m0\n    addresses: [10.1.0.1/24]\n    members: [{name: m9}]\n",
        6,
        "groups[1].name",
        "already used as a member name",
    ),
    (
        "member named like a group",
        MINIMAL + "  - name: ipmp1\n    addresses: [10.1.0.1/24]\n    members: [{name: ipmp0}]\n",
        8,
        "groups[1].members[0].name",
        "already used as a group name",
    ),
    (
        "address in two groups",
        MINIMAL + "  - name: ipmp1\n    addresses: [198.18.0.10/24]\n    members: [{name: m9}]\n",
        7,
        "groups[1].addresses[0]",
        "already used at groups[0].addresses[0]",
    ),
    # --- YAML itself
    ("yaml syntax", group_doc("    mtu: [1500"), 5, "", "YAML syntax error"),
    ("yaml tab", MINIMAL + "\tlog_level: info\n", 6, "", "YAML syntax error"),
    ("yaml two documents", MINIMAL + "---\nlog_level: info\n", 6, "", "single document"),
    ("yaml bad character", MINIMAL + 'log_level: "\x01"\n', 6, "", "U+0001"),
    ("yaml unknown alias", MINIMAL + "log_level: *nope\n", 6, "", "alias"),
]


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in ERROR_CASES],
)
def test_errors(text: str, line: int, key: str, fragment: str) -> None:
    assert_error(text, line, key, fragment)


def test_unknown_key_lists_valid_keys() -> None:
    error = assert_error(group_doc("    colour: red"), 4, "groups[0].colour", "unknown key")
    for key in ("name", "mode", "mtu", "mac", "addresses", "routes", "members", "probe"):
        assert key in error.message


def test_duplicate_key_names_first_line() -> None:
    error = assert_error(
        group_doc("    mtu: 1500", "    mtu: 9000"), 5, "groups[0].mtu", "duplicate"
    )
    assert "line 4" in error.message


def test_error_in_full_file_points_at_value_line() -> None:
    text = FULL.replace("test_address: 198.18.0.22/24", "test_address: 198.18.0.10/24")
    error = assert_error(text, 24, "groups[0].members[1].test_address", "already used")
    assert "line 9" in error.message


def test_key_with_line_break_still_gives_one_line() -> None:
    error = parse_error(group_doc('    "bad\\nkey": 1'))
    assert len(str(error).splitlines()) == 1
    assert str(error).startswith("lab.yaml:4: groups[0].bad\\nkey: unknown key")


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (300, 300),
        ("0ms", 0),
        ("250ms", 250),
        ("1s", 1000),
        ("1.5s", 1500),
        ("0.25s", 250),
        ("0.001s", 1),
        ("10s", 10_000),
        ("007ms", 7),
        ("120s", 120_000),
    ],
)
def test_parse_duration_ms_valid(value: object, expected: int) -> None:
    result = parse_duration_ms(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-1, "negative"),
        ("-1s", "negative"),
        ("-5ms", "negative"),
        (True, "boolean"),
        (False, "boolean"),
        (1.5, "must be an integer"),
        (1000.0, "must be an integer"),
        ("300", "no unit"),
        ("1.5", "no unit"),
        ("10 ms", "invalid duration"),
        (" 1s", "invalid duration"),
        ("1m", "invalid duration"),
        ("1S", "invalid duration"),
        ("1MS", "invalid duration"),
        ("s", "invalid duration"),
        ("", "invalid duration"),
        ("1.s", "invalid duration"),
        (".5s", "invalid duration"),
        ("1e3ms", "invalid duration"),
        ("1.5ms", "whole number of milliseconds"),
        ("0.0001s", "whole number of milliseconds"),
        (None, "expected a duration"),
        ([1], "expected a duration"),
    ],
)
def test_parse_duration_ms_invalid(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration_ms(value)


# --------------------------------------------------------------------------- MACs


def test_default_mac_is_stable_local_unicast() -> None:
    mac = default_mac("ipmp0")
    assert mac == default_mac("ipmp0")
    assert len(mac) == 6
    # Pinned so an accidental change of the derivation (which would change every
    # host's MAC on upgrade) fails the test.
    assert format_mac(mac) == "96:07:a5:cb:0f:73"
    assert default_mac("ipmp1") != mac
    for index in range(500):
        other = default_mac(f"g{index}")
        assert len(other) == 6
        assert other[0] & 0x02, format_mac(other)
        assert not other[0] & 0x01, format_mac(other)


def test_format_mac() -> None:
    assert format_mac(b"\x02\x00\x00\x00\x00\x10") == "02:00:00:00:00:10"
    assert format_mac(bytes.fromhex("AABBCCDDEEFF")) == "aa:bb:cc:dd:ee:ff"


# --------------------------------------------------------------------------- check_system


def test_check_system_accepts_matching_interfaces() -> None:
    config = parse_config(FULL, "lab.yaml")
    mtus = {"m0": 9000, "m1": 9216, "m2": 1500}
    seen: list[str] = []

    def mtu_of(name: str) -> int | None:
        seen.append(name)
        return mtus.get(name)

    check_system(config, mtu_of)
    assert seen == ["m0", "m1", "m2"]


def test_check_system_missing_interface() -> None:
    config = parse_config(FULL, "lab.yaml")
    mtus = {"m0": 9000, "m2": 1500}
    with pytest.raises(ConfigError) as info:
        check_system(config, mtus.get)
    assert (
        str(info.value) == "lab.yaml:23: groups[0].members[1].name: interface 'm1' does not exist"
    )
    assert info.value.line == 23


def test_check_system_accepts_a_member_mtu_below_the_groups() -> None:
    """The daemon raises it at start, as the bonding driver raises its slaves."""
    config = parse_config(FULL, "lab.yaml")
    check_system(config, {"m0": 1500, "m1": 1500, "m2": 1400}.get)


def test_check_system_hand_built_config_has_no_line() -> None:
    config = Config(
        path="hand.yaml",
        groups=(
            GroupConfig(
                name="g",
                mac=default_mac("g"),
                addresses=(ip_interface("10.0.0.1/24"),),
                members=(MemberConfig(name="x0"),),
            ),
        ),
    )
    with pytest.raises(ConfigError) as info:
        check_system(config, lambda name: None)
    assert str(info.value) == "hand.yaml: groups[0].members[0].name: interface 'x0' does not exist"


@pytest.mark.skipif(not os.path.exists("/sys/class/net/lo/mtu"), reason="no sysfs")
def test_check_system_default_reads_sysfs() -> None:
    def config_with(member: str) -> Config:
        group = GroupConfig(
            name="g",
            mac=default_mac("g"),
            addresses=(ip_interface("10.0.0.1/24"),),
            members=(MemberConfig(name=member),),
        )
        return Config(path="sys.yaml", groups=(group,))

    check_system(config_with("lo"))  # loopback exists with a large MTU
    with pytest.raises(ConfigError, match="does not exist"):
        check_system(config_with("vnbnoexist0"))


# --------------------------------------------------------------------------- load_config


def test_load_config_reads_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(FULL)
    config = load_config(str(path))
    assert config.path == str(path)
    assert config.groups == FULL_EXPECTED_GROUPS
    assert config == parse_config(FULL, str(path))


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    error = info.value
    assert error.line is None
    assert error.path == path
    assert str(error).startswith(f"{path}: cannot read")
    assert "No such file" in str(error)
    assert len(str(error).splitlines()) == 1


def test_load_config_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path))


def test_load_config_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("groups:\n  - name: ipmp0\n    addresses: [10.0.0.1/24\n    members: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    error = info.value
    assert error.line == 4
    assert str(error).startswith(f"{path}:4: YAML syntax error")
    assert len(str(error).splitlines()) == 1


def test_load_config_validation_error_uses_file_path(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(MINIMAL.replace("name: m0", "name: m0\n        standby: true"))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value).startswith(f"{path}:5: groups[0].members: at least one member")


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"log_level: info\n# caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.line == 2
    assert "UTF-8" in str(info.value)


# --------------------------------------------------------------------------- import cost


def test_import_stays_light() -> None:
    code = (
        "import sys, vnicbond.config\n"
        "heavy = [m for m in ('scapy', 'pyroute2', 'uvloop') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("mode", ["active-backup", "load-spread"])
def test_both_modes_are_accepted(mode: str) -> None:
    assert parse_config(group_doc(f"    mode: {mode}")).groups[0].mode == mode
