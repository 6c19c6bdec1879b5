"""Every error the configuration reader can report, pinned word for word.

One small YAML document per error site of :mod:`vnicbond.config` (and per distinct
message of the value parsers that reaches the user through a file: durations, MACs,
interface names, addresses, the metrics listen address), each with the exact one-line
text a user sees, ``<string>:LINE: key.path: message``. test_config.py checks the same
errors by fragment and the error format itself; this file guards the wording, so code
can move without a message changing. check_system's two messages are pinned exactly in
test_config.py (test_check_system_missing_interface, test_check_system_mtu_too_small).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vnicbond.config import ConfigError, load_config, parse_config

# The documents below all start with one valid group; what a case adds begins on line 5.
HEAD = "groups:\n  - name: ipmp0\n    addresses: [198.18.0.10/24]\n"


def top(*lines: str) -> str:
    """A valid file followed by top-level ``lines`` (from line 5)."""
    return HEAD + "    members: [{name: m0}]\n" + "".join(f"{line}\n" for line in lines)


def group(*lines: str) -> str:
    """A valid file whose group ipmp0 goes on with ``lines`` (keys from line 5)."""
    return HEAD + "    members: [{name: m0}]\n" + "".join(f"    {line}\n" for line in lines)


def members(*lines: str) -> str:
    """Group ipmp0 (address on line 3) whose member list is ``lines`` (from line 5)."""
    return HEAD + "    members:\n" + "".join(f"      {line}\n" for line in lines)


def addresses(*lines: str) -> str:
    """Group ipmp0 whose address list is ``lines`` (from line 5)."""
    return "groups:\n  - name: ipmp0\n    members: [{name: m0}]\n    addresses:\n" + "".join(
        f"      {line}\n" for line in lines
    )


def named(name: str) -> str:
    """A valid file but for the group's name (on line 2)."""
    return groups(f"- name: {name}", "  addresses: [198.18.0.10/24]", "  members: [{name: m0}]")


def groups(*lines: str) -> str:
    """A ``groups`` list made of ``lines`` (from line 2)."""
    return "groups:\n" + "".join(f"  {line}\n" for line in lines)


# (case id, YAML text, the exact error)
ERRORS: list[tuple[str, str, str]] = [
    # --- YAML syntax and characters (the reader, the scanner, the parser, the composer)
    (
        "yaml bad character",
        top('log_level: "\x01"'),
        "<string>:5: invalid character U+0001: special characters are not allowed",
    ),
    (
        "yaml tab",
        top("\tlog_level: info"),
        "<string>:5: YAML syntax error: while scanning for the next token: found character '\\t' "
        "that cannot start any token",
    ),
    (
        "yaml unclosed flow list",
        group("mtu: [1500"),
        "<string>:6: YAML syntax error: while parsing a flow sequence on line 5: expected ',' or "
        "']', but got '<stream end>'",
    ),
    (
        "yaml two documents",
        top("---", "log_level: info"),
        "<string>:5: YAML syntax error: expected a single document in the stream on line 1, but "
        "found another document",
    ),
    (
        "yaml unknown alias",
        top("log_level: *nope"),
        "<string>:5: YAML syntax error: found undefined alias 'nope'",
    ),
    (
        "yaml bad indentation",
        top(" log_level: info"),
        "<string>:5: YAML syntax error: while parsing a block mapping on line 1: expected <block "
        "end>, but found '<block mapping start>'",
    ),
    (
        "yaml unclosed quote",
        top("log_level: 'info"),
        "<string>:6: YAML syntax error: while scanning a quoted scalar on line 5: found "
        "unexpected end of stream",
    ),
    # --- the document
    (
        "empty document",
        "",
        "<string>:1: the configuration is empty; expected a mapping with 'groups'",
    ),
    (
        "comments only",
        "# nothing here\n",
        "<string>:1: the configuration is empty; expected a mapping with 'groups'",
    ),
    (
        "top-level list",
        "- a\n- b\n",
        "<string>:1: the top-level document must be a mapping, got a list",
    ),
    (
        "top-level string",
        "\n\nhello\n",
        "<string>:3: the top-level document must be a mapping, got a string ('hello')",
    ),
    # --- mappings: the node kinds an 'expected X, got Y' message describes
    (
        "mapping got null",
        top("control:"),
        "<string>:5: control: expected a mapping, got null (an empty value)",
    ),
    (
        "mapping got boolean",
        top("control: true"),
        "<string>:5: control: expected a mapping, got a boolean (true)",
    ),
    (
        "mapping got integer",
        top("control: 3"),
        "<string>:5: control: expected a mapping, got an integer (3)",
    ),
    (
        "mapping got number",
        top("control: 1.5e3"),
        "<string>:5: control: expected a mapping, got a number (1.5e3)",
    ),
    (
        "mapping got string",
        top("control: /x"),
        "<string>:5: control: expected a mapping, got a string ('/x')",
    ),
    (
        "mapping got long string",
        top("control: " + "x" * 50),
        "<string>:5: control: expected a mapping, got a string "
        "('xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...')",
    ),
    (
        "mapping got list",
        top("control: []"),
        "<string>:5: control: expected a mapping, got a list",
    ),
    (
        "mapping got tagged scalar",
        top("control: !sock /x"),
        "<string>:5: control: expected a mapping, got a value tagged !sock",
    ),
    (
        "mapping with a tag",
        top("control: !conf {socket: /x}"),
        "<string>:5: control: expected a mapping, got a mapping",
    ),
    # --- mapping keys
    (
        "key not a string",
        group("1: x"),
        "<string>:5: groups[0]: keys must be strings, got an integer (1) as a key",
    ),
    (
        "key is a list",
        group("? [a]", ": x"),
        "<string>:5: groups[0]: keys must be strings, got a list as a key",
    ),
    (
        "key is null",
        group("~: x"),
        "<string>:5: groups[0]: keys must be strings, got null (an empty value) as a key",
    ),
    (
        "duplicate key",
        group("mtu: 1500", "mtu: 9000"),
        "<string>:6: groups[0].mtu: duplicate key 'mtu' (first given on line 5)",
    ),
    (
        "unknown key with hint",
        group("failbak: true"),
        "<string>:5: groups[0].failbak: unknown key 'failbak' (did you mean 'failback'? valid "
        "keys: name, mode, mtu, mac, addresses, routes, failure_detection_time, failback, "
        "announce, probe, mac_learning, members)",
    ),
    (
        "unknown key without hint",
        top("colour: red"),
        "<string>:5: colour: unknown key 'colour' (valid keys: control, metrics, log_level, "
        "groups)",
    ),
    # --- required keys
    (
        "missing groups",
        "log_level: info\n",
        "<string>:1: groups: required key is missing",
    ),
    (
        "missing group name",
        groups("- addresses: [198.18.0.10/24]", "  members: [{name: m0}]"),
        "<string>:2: groups[0].name: required key is missing",
    ),
    (
        "missing members",
        HEAD,
        "<string>:2: groups[0].members: required key is missing",
    ),
    (
        "missing member name",
        members("- standby: false"),
        "<string>:5: groups[0].members[0].name: required key is missing",
    ),
    (
        "missing route to",
        group("routes: [{via: 198.18.0.1}]"),
        "<string>:5: groups[0].routes[0].to: required key is missing",
    ),
    # --- lists
    (
        "groups not a list",
        "groups: {name: ipmp0}\n",
        "<string>:1: groups: expected a list, got a mapping",
    ),
    (
        "groups empty",
        "groups: []\n",
        "<string>:1: groups: at least one group is required",
    ),
    (
        "route with no addresses",
        groups("- name: ipmp0", "  routes: [{to: default, via: 198.18.0.1}]",
               "  members: [{name: m0}]"),
        "<string>:3: groups[0].routes[0].via: gateway 198.18.0.1 needs an IPv4 address of the "
        "group on its network in 'addresses' (the group has none configured; a route through "
        "an address that DHCP or SLAAC brings is theirs to add)",
    ),
    (
        "members empty",
        HEAD + "    members: []\n",
        "<string>:4: groups[0].members: at least one member is required",
    ),
    # --- strings and choices
    (
        "string expected",
        top("log_level: 3"),
        "<string>:5: log_level: expected a string, got an integer (3)",
    ),
    (
        "string got tagged",
        top("log_level: !level info"),
        "<string>:5: log_level: expected a string, got a value tagged !level",
    ),
    (
        "log level unknown",
        top("log_level: loud"),
        "<string>:5: log_level: unknown log level 'loud' (valid: debug, info, warning, error)",
    ),
    (
        "log level long",
        top("log_level: " + "v" * 60),
        "<string>:5: log_level: unknown log level 'vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv...' "
        "(valid: debug, info, warning, error)",
    ),
    (
        "probe method unknown",
        group("probe: {method: ping}"),
        "<string>:5: groups[0].probe.method: unknown probe method 'ping' (valid: icmp, arp)",
    ),
    # --- booleans: only true and false
    (
        "boolean expected",
        group("failback: yes"),
        "<string>:5: groups[0].failback: expected a boolean (true or false), got a string ('yes')",
    ),
    (
        "boolean quoted",
        group("failback: 'true'"),
        "<string>:5: groups[0].failback: expected a boolean (true or false), got a string ('true')",
    ),
    (
        "boolean tagged yes",
        group("failback: !!bool yes"),
        "<string>:5: groups[0].failback: expected a boolean (true or false), got a boolean (yes)",
    ),
    (
        "standby not boolean",
        members("- name: m0", "- name: m1", "  standby: 1"),
        "<string>:7: groups[0].members[1].standby: expected a boolean (true or false), got an "
        "integer (1)",
    ),
    # --- integers and their ranges
    (
        "integer expected",
        group("mtu: '1500'"),
        "<string>:5: groups[0].mtu: expected an integer, got a string ('1500')",
    ),
    (
        "integer got number",
        group("mtu: 1500.0"),
        "<string>:5: groups[0].mtu: expected an integer, got a number (1500.0)",
    ),
    (
        "integer tagged",
        group("mtu: !!int lots"),
        "<string>:5: groups[0].mtu: invalid integer 'lots'",
    ),
    (
        "integer too small",
        group("mtu: 67"),
        "<string>:5: groups[0].mtu: must be between 68 and 65535, got 67",
    ),
    (
        "integer too large",
        group("mtu: 65536"),
        "<string>:5: groups[0].mtu: must be between 68 and 65535, got 65536",
    ),
    (
        "announce count negative",
        group("announce: {count: -1}"),
        "<string>:5: groups[0].announce.count: must be between 0 and 100, got -1",
    ),
    (
        "announce count too large",
        group("announce: {count: 101}"),
        "<string>:5: groups[0].announce.count: must be between 0 and 100, got 101",
    ),
    # --- durations (parse_duration_ms's messages as they reach the user, and the ranges)
    (
        "duration expected",
        group("failure_detection_time: true"),
        "<string>:5: groups[0].failure_detection_time: expected a duration such as '250ms' or "
        "'1s' or an integer of milliseconds, got a boolean (true)",
    ),
    (
        "duration got list",
        group("failure_detection_time: [1s]"),
        "<string>:5: groups[0].failure_detection_time: expected a duration such as '250ms' or "
        "'1s' or an integer of milliseconds, got a list",
    ),
    (
        "duration got null",
        group("failure_detection_time:"),
        "<string>:5: groups[0].failure_detection_time: expected a duration such as '250ms' or "
        "'1s' or an integer of milliseconds, got null (an empty value)",
    ),
    (
        "duration tagged integer",
        group("failure_detection_time: !!int soon"),
        "<string>:5: groups[0].failure_detection_time: invalid integer 'soon'",
    ),
    (
        "duration negative integer",
        group("failure_detection_time: -5"),
        "<string>:5: groups[0].failure_detection_time: a duration must not be negative, got -5",
    ),
    (
        "duration negative string",
        group("failure_detection_time: -5ms"),
        "<string>:5: groups[0].failure_detection_time: a duration must not be negative, got '-5ms'",
    ),
    (
        "duration quoted integer",
        group("failure_detection_time: '300'"),
        "<string>:5: groups[0].failure_detection_time: duration '300' has no unit; write e.g. "
        "'300ms' or '300s' (only an unquoted integer means milliseconds)",
    ),
    (
        "duration decimal without unit",
        group("failure_detection_time: 1.5"),
        "<string>:5: groups[0].failure_detection_time: duration '1.5' has no unit; write e.g. "
        "'1.5ms' or '1.5s' (only an unquoted integer means milliseconds)",
    ),
    (
        "duration garbage",
        group("failure_detection_time: soon"),
        "<string>:5: groups[0].failure_detection_time: invalid duration 'soon': expected a "
        "number directly followed by 'ms' or 's' (e.g. '250ms', '1.5s') or an integer of "
        "milliseconds",
    ),
    (
        "duration space",
        group("failure_detection_time: 10 ms"),
        "<string>:5: groups[0].failure_detection_time: invalid duration '10 ms': expected a "
        "number directly followed by 'ms' or 's' (e.g. '250ms', '1.5s') or an integer of "
        "milliseconds",
    ),
    (
        "duration exponent",
        group("failure_detection_time: 1e3"),
        "<string>:5: groups[0].failure_detection_time: invalid duration '1e3': expected a number "
        "directly followed by 'ms' or 's' (e.g. '250ms', '1.5s') or an integer of milliseconds",
    ),
    (
        "duration fraction of ms",
        group("failure_detection_time: 1000.5ms"),
        "<string>:5: groups[0].failure_detection_time: duration '1000.5ms' is not a whole number "
        "of milliseconds",
    ),
    (
        "fdt too small",
        group("failure_detection_time: 99ms"),
        "<string>:5: groups[0].failure_detection_time: must be at least 100ms, got 99ms",
    ),
    (
        "fdt integer too small",
        group("failure_detection_time: 50"),
        "<string>:5: groups[0].failure_detection_time: must be at least 100ms, got 50",
    ),
    (
        "announce interval zero",
        group("announce: {interval: 0ms}"),
        "<string>:5: groups[0].announce.interval: must be at least 1ms, got 0ms",
    ),
    (
        "announce interval too long",
        group("announce: {interval: 10001ms}"),
        "<string>:5: groups[0].announce.interval: must be at most 10s, got 10001ms",
    ),
    # --- interface names
    (
        "ifname empty",
        named("''"),
        "<string>:2: groups[0].name: an interface name must not be empty",
    ),
    (
        "ifname too long",
        named("abcdefghijklmnop"),
        "<string>:2: groups[0].name: interface name 'abcdefghijklmnop' is too long (16 bytes; "
        "Linux allows at most 15)",
    ),
    (
        "ifname multibyte too long",
        named("ééééééééé"),
        "<string>:2: groups[0].name: interface name 'ééééééééé' is too long (18 bytes; Linux "
        "allows at most 15)",
    ),
    (
        "ifname dot",
        named("'.'"),
        "<string>:2: groups[0].name: '.' is not a valid interface name",
    ),
    (
        "ifname dotdot",
        members("- name: '..'"),
        "<string>:5: groups[0].members[0].name: '..' is not a valid interface name",
    ),
    (
        "ifname slash",
        members("- name: m/0"),
        "<string>:5: groups[0].members[0].name: interface name 'm/0' contains '/'; names cannot "
        "contain '/', ':', '%', whitespace or control characters",
    ),
    (
        "ifname colon",
        members("- name: 'm:0'"),
        "<string>:5: groups[0].members[0].name: interface name 'm:0' contains ':'; names cannot "
        "contain '/', ':', '%', whitespace or control characters",
    ),
    (
        "ifname percent",
        members("- name: m%d"),
        "<string>:5: groups[0].members[0].name: interface name 'm%d' contains '%'; names cannot "
        "contain '/', ':', '%', whitespace or control characters",
    ),
    (
        "ifname space",
        members("- name: 'm 0'"),
        "<string>:5: groups[0].members[0].name: interface name 'm 0' contains ' '; names cannot "
        "contain '/', ':', '%', whitespace or control characters",
    ),
    (
        "ifname control character",
        members("- name: \"m\\x7f\""),
        "<string>:5: groups[0].members[0].name: interface name 'm\\x7f' contains '\\x7f'; names "
        "cannot contain '/', ':', '%', whitespace or control characters",
    ),
    (
        "ifname not a string",
        members("- name: 42"),
        "<string>:5: groups[0].members[0].name: expected a string, got an integer (42)",
    ),
    # --- mode
    (
        "mode unknown",
        group("mode: round-robin"),
        "<string>:5: groups[0].mode: unknown mode 'round-robin' (valid modes: active-backup, "
        "load-spread)",
    ),
    # --- MAC address
    (
        "mac not a scalar",
        group("mac: [2, 0]"),
        "<string>:5: groups[0].mac: expected a MAC address, got a list",
    ),
    (
        "mac null",
        group("mac:"),
        "<string>:5: groups[0].mac: expected a MAC address, got null (an empty value)",
    ),
    (
        "mac invalid",
        group("mac: 02:00:00:00:10"),
        "<string>:5: groups[0].mac: invalid MAC address '02:00:00:00:10': expected six hex "
        "octets separated by ':' such as 02:00:00:00:00:10",
    ),
    (
        "mac integer",
        group("mac: 12"),
        "<string>:5: groups[0].mac: invalid MAC address '12': expected six hex octets separated "
        "by ':' such as 02:00:00:00:00:10",
    ),
    (
        "mac multicast",
        group("mac: 01:00:5E:00:00:01"),
        "<string>:5: groups[0].mac: MAC address 01:00:5e:00:00:01 is multicast; the group's MAC "
        "must be unicast (bit 0x01 of the first octet clear)",
    ),
    (
        "mac all zeros",
        group("mac: 00:00:00:00:00:00"),
        "<string>:5: groups[0].mac: MAC address must not be all zeros",
    ),
    # --- data and test addresses
    (
        "address not a string",
        addresses("- 10"),
        "<string>:5: groups[0].addresses[0]: expected an address with a prefix such as "
        "198.18.0.10/24, got an integer (10)",
    ),
    (
        "address scope id",
        addresses("- 'fe80::1%eth0/64'"),
        "<string>:5: groups[0].addresses[0]: 'fe80::1%eth0/64': scope ids ('%...') are not allowed",
    ),
    (
        "address invalid",
        addresses("- 198.18.0.300/24"),
        "<string>:5: groups[0].addresses[0]: invalid interface address '198.18.0.300/24' "
        "(expected e.g. 198.18.0.10/24 or 2001:db8::10/64)",
    ),
    (
        "address unspecified",
        addresses("- 0.0.0.0/0"),
        "<string>:5: groups[0].addresses[0]: address 0.0.0.0 is a unspecified address",
    ),
    (
        "address multicast",
        addresses("- 'ff02::1/64'"),
        "<string>:5: groups[0].addresses[0]: address ff02::1 is a multicast address",
    ),
    (
        "address loopback",
        addresses("- 127.0.0.2/8"),
        "<string>:5: groups[0].addresses[0]: address 127.0.0.2 is a loopback address",
    ),
    (
        "address duplicate",
        addresses("- 198.18.0.10/24", "- 198.18.0.10/25"),
        "<string>:6: groups[0].addresses[1]: address 198.18.0.10 is already used at "
        "groups[0].addresses[0] on line 5",
    ),
    (
        "test address loopback",
        members("- {name: m0, test_address: '::1'}"),
        "<string>:5: groups[0].members[0].test_address: test address ::1 is a loopback address",
    ),
    (
        "test address is a data address",
        members("- {name: m0, test_address: 198.18.0.10/24}"),
        "<string>:5: groups[0].members[0].test_address: test address 198.18.0.10 is already used "
        "at groups[0].addresses[0] on line 3",
    ),
    (
        "test address not a string",
        members("- {name: m0, test_address: 7}"),
        "<string>:5: groups[0].members[0].test_address: expected an address with a prefix such "
        "as 198.18.0.10/24, got an integer (7)",
    ),
    # --- routes
    (
        "route to not a string",
        group("routes: [{to: 10}]"),
        "<string>:5: groups[0].routes[0].to: expected 'default' or a network such as 10.0.0.0/8, "
        "got an integer (10)",
    ),
    (
        "route to scope id",
        group("routes: [{to: 'fe80::%eth0/64'}]"),
        "<string>:5: groups[0].routes[0].to: 'fe80::%eth0/64': scope ids ('%...') are not allowed",
    ),
    (
        "route to invalid",
        group("routes: [{to: everywhere}]"),
        "<string>:5: groups[0].routes[0].to: invalid route destination 'everywhere' (expected "
        "'default' or a network such as 10.0.0.0/8)",
    ),
    (
        "route to host bits",
        group("routes: [{to: 10.1.2.3/16}]"),
        "<string>:5: groups[0].routes[0].to: route destination 10.1.2.3/16 has host bits set "
        "(did you mean 10.1.0.0/16?)",
    ),
    (
        "route via not a string",
        group("routes: [{to: default, via: 5}]"),
        "<string>:5: groups[0].routes[0].via: expected a gateway IP address, got an integer (5)",
    ),
    (
        "route via invalid",
        group("routes: [{to: default, via: 198.18.0.1/24}]"),
        "<string>:5: groups[0].routes[0].via: invalid IP address '198.18.0.1/24' (expected e.g. "
        "198.18.0.1)",
    ),
    (
        "route via other family",
        group("routes: [{to: 10.0.0.0/8, via: '2001:db8::1'}]"),
        "<string>:5: groups[0].routes[0].via: gateway 2001:db8::1 is IPv6 but the destination "
        "10.0.0.0/8 is IPv4",
    ),
    (
        "route via unspecified",
        group("routes: [{to: 10.0.0.0/8, via: 0.0.0.0}]"),
        "<string>:5: groups[0].routes[0].via: 0.0.0.0 cannot be a gateway",
    ),
    (
        "route via multicast",
        group("routes: [{to: 10.0.0.0/8, via: 224.0.0.1}]"),
        "<string>:5: groups[0].routes[0].via: 224.0.0.1 cannot be a gateway",
    ),
    (
        "route via loopback",
        group("routes: [{to: 10.0.0.0/8, via: 127.0.0.1}]"),
        "<string>:5: groups[0].routes[0].via: 127.0.0.1 cannot be a gateway",
    ),
    (
        "route via own address",
        group("routes: [{to: default, via: 198.18.0.10}]"),
        "<string>:5: groups[0].routes[0].via: gateway 198.18.0.10 is one of the group's own "
        "addresses",
    ),
    (
        "route via not on-link",
        group("routes: [{to: default, via: 10.9.9.9}]"),
        "<string>:5: groups[0].routes[0].via: gateway 10.9.9.9 is not on-link for any of the "
        "group's addresses (198.18.0.10/24)",
    ),
    (
        "route default without via",
        group("routes: [{to: default}]"),
        "<string>:5: groups[0].routes[0].via: a default route needs 'via' (the gateway; it also "
        "picks IPv4 or IPv6)",
    ),
    (
        "route duplicate",
        group("routes:", "  - {to: 10.0.0.0/8}", "  - {to: 10.0.0.0/8, via: 198.18.0.1}"),
        "<string>:7: groups[0].routes[1].to: duplicate route to 10.0.0.0/8 (also at "
        "groups[0].routes[0] on line 6)",
    ),
    (
        "route duplicate default",
        group("routes:", "  - {to: default, via: 198.18.0.1}", "  - {to: 0.0.0.0/0}"),
        "<string>:7: groups[0].routes[1].to: duplicate route to 0.0.0.0/0 (also at "
        "groups[0].routes[0] on line 6)",
    ),
    # --- probe targets
    (
        "probe target not a string",
        group("probe: {targets: [1]}"),
        "<string>:5: groups[0].probe.targets[0]: expected a target IP address, got an integer (1)",
    ),
    (
        "probe target invalid",
        group("probe: {targets: [198.18.0.2/24]}"),
        "<string>:5: groups[0].probe.targets[0]: invalid IP address '198.18.0.2/24' (expected "
        "e.g. 198.18.0.1)",
    ),
    (
        "probe target duplicate",
        group("probe:", "  targets:", "    - 198.18.0.2", "    - 198.18.0.2"),
        "<string>:8: groups[0].probe.targets[1]: duplicate target 198.18.0.2 (also at "
        "groups[0].probe.targets[0] on line 7)",
    ),
    (
        "probe target unspecified",
        group("probe: {targets: ['::']}"),
        "<string>:5: groups[0].probe.targets[0]: :: cannot be a probe target",
    ),
    (
        "probe arp ipv6 target",
        group("probe: {method: arp, targets: ['2001:db8::2']}"),
        "<string>:5: groups[0].probe.targets[0]: probe method 'arp' needs IPv4 targets, "
        "2001:db8::2 is IPv6 (use method icmp)",
    ),
    # --- interface names used twice
    (
        "group name reused",
        top("  - {name: ipmp0, addresses: [198.18.1.10/24], members: [{name: m1}]}"),
        "<string>:5: groups[1].name: duplicate group name 'ipmp0' (also at groups[0].name on "
        "line 2)",
    ),
    (
        "member named like its group",
        members("- name: ipmp0"),
        "<string>:5: groups[0].members[0].name: member name 'ipmp0' must differ from the group "
        "name",
    ),
    (
        "member listed twice",
        members("- name: m0", "- name: m0"),
        "<string>:6: groups[0].members[1].name: interface 'm0' is already a member at "
        "groups[0].members[0].name on line 5",
    ),
    (
        "member in two groups",
        top("  - {name: ipmp1, addresses: [198.18.1.10/24], members: [{name: m0}]}"),
        "<string>:5: groups[1].members[0].name: interface 'm0' is already a member at "
        "groups[0].members[0].name on line 4",
    ),
    (
        "group named like a member",
        top("  - {name: m0, addresses: [198.18.1.10/24], members: [{name: m1}]}"),
        "<string>:5: groups[1].name: interface 'm0' is already used as a member name at "
        "groups[0].members[0].name on line 4",
    ),
    (
        "member named like another group",
        top("  - {name: ipmp1, addresses: [198.18.1.10/24], members: [{name: ipmp0}]}"),
        "<string>:5: groups[1].members[0].name: interface 'ipmp0' is already used as a group "
        "name at groups[0].name on line 2",
    ),
    # --- members
    (
        "all members standby",
        members("- {name: m0, standby: true}", "- {name: m1, standby: true}"),
        "<string>:5: groups[0].members: at least one member must not be standby (all members are "
        "standby)",
    ),
    # --- control socket
    (
        "socket not a string",
        top("control: {socket: 5}"),
        "<string>:5: control.socket: expected a string, got an integer (5)",
    ),
    (
        "socket relative",
        top("control: {socket: run/vnicbond.sock}"),
        "<string>:5: control.socket: socket path 'run/vnicbond.sock' must be absolute",
    ),
    (
        "socket relative long",
        top("control: {socket: " + "r" * 50 + "}"),
        "<string>:5: control.socket: socket path 'rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr...' must "
        "be absolute",
    ),
    (
        "socket too long",
        top("control: {socket: /" + "s" * 107 + "}"),
        "<string>:5: control.socket: socket path is too long (at most 107 bytes)",
    ),
    (
        "socket NUL",
        top("control: {socket: \"/run/a\\0b\"}"),
        "<string>:5: control.socket: socket path must not contain NUL",
    ),
    # --- metrics listen address (parse_listen's messages as they reach the user)
    (
        "listen not a string",
        top("metrics: {listen: 9469}"),
        "<string>:5: metrics.listen: expected a string, got an integer (9469)",
    ),
    (
        "listen no port",
        top("metrics: {listen: 127.0.0.1}"),
        "<string>:5: metrics.listen: metrics listen '127.0.0.1': expected ADDRESS:PORT, e.g. "
        "127.0.0.1:9469 or [::1]:9469",
    ),
    (
        "listen no address",
        top("metrics: {listen: ':9469'}"),
        "<string>:5: metrics.listen: metrics listen ':9469': expected ADDRESS:PORT, e.g. "
        "127.0.0.1:9469 or [::1]:9469",
    ),
    (
        "listen not an ipv4 address",
        top("metrics: {listen: 'localhost:9469'}"),
        "<string>:5: metrics.listen: metrics listen 'localhost:9469': expected ADDRESS:PORT, "
        "e.g. 127.0.0.1:9469 or [::1]:9469 ('localhost': not an IPv4 address)",
    ),
    (
        "listen ipv6 without brackets",
        top("metrics: {listen: '::1:9469'}"),
        "<string>:5: metrics.listen: metrics listen '::1:9469': expected ADDRESS:PORT, e.g. "
        "127.0.0.1:9469 or [::1]:9469 ('::1': put IPv6 addresses in brackets)",
    ),
    (
        "listen bracket without port",
        top("metrics: {listen: '[::1]'}"),
        "<string>:5: metrics.listen: metrics listen '[::1]': expected ADDRESS:PORT, e.g. "
        "127.0.0.1:9469 or [::1]:9469",
    ),
    (
        "listen bracket not ipv6",
        top("metrics: {listen: '[127.0.0.1]:9469'}"),
        "<string>:5: metrics.listen: metrics listen '[127.0.0.1]:9469': expected ADDRESS:PORT, "
        "e.g. 127.0.0.1:9469 or [::1]:9469 ('127.0.0.1' is not an IPv6 address)",
    ),
    (
        "listen port not a number",
        top("metrics: {listen: '127.0.0.1:http'}"),
        "<string>:5: metrics.listen: metrics listen '127.0.0.1:http': expected ADDRESS:PORT, "
        "e.g. 127.0.0.1:9469 or [::1]:9469 (port 'http' is not a number)",
    ),
    (
        "listen port zero",
        top("metrics: {listen: '127.0.0.1:0'}"),
        "<string>:5: metrics.listen: metrics listen '127.0.0.1:0': expected ADDRESS:PORT, e.g. "
        "127.0.0.1:9469 or [::1]:9469 (port 0 is not in 1..65535)",
    ),
    (
        "listen port too large",
        top("metrics: {listen: '[::1]:65536'}"),
        "<string>:5: metrics.listen: metrics listen '[::1]:65536': expected ADDRESS:PORT, e.g. "
        "127.0.0.1:9469 or [::1]:9469 (port 65536 is not in 1..65535)",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [pytest.param(text, expected, id=name) for name, text, expected in ERRORS]
)
def test_error_text(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value) == expected


def test_every_case_is_distinct() -> None:
    names = [name for name, _, _ in ERRORS]
    assert len(names) == len(set(names))
    assert len({text for _, text, _ in ERRORS}) == len(ERRORS)


# --------------------------------------------------------------------------- load_config


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    return str(info.value)


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert load_error(path) == (
        f"{path}: cannot read the configuration file: No such file or directory"
    )


def test_load_config_directory(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"{tmp_path}: cannot read the configuration file: Is a directory"


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"log_level: info\n# caf\xe9\n")
    assert load_error(path) == f"{path}:2: the file is not valid UTF-8 (invalid continuation byte)"


def test_load_config_not_utf8_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "cut.yaml"
    path.write_bytes(b"log_level: info\n\n# caf\xc3")
    assert load_error(path) == f"{path}:3: the file is not valid UTF-8 (unexpected end of data)"


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(group("mtu: 67"))
    assert load_error(path) == f"{path}:5: groups[0].mtu: must be between 68 and 65535, got 67"
