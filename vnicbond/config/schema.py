"""vnicbond's configuration schema: which keys exist, what their values mean, how they relate.

Owns :func:`parse_config` and :func:`load_config` and the rules they apply on top of the
generic :class:`~vnicbond.config.reader.NodeReader`: the keys of each mapping, which are
required, the type and range of each value, and the rules across values (no interface name
or address used twice, gateways on-link, routes unique, probe targets fitting the method,
at least one member not standby; ``addresses`` may be empty or absent, for a bond whose
addresses come from DHCP, SLAAC or scripts). Single values are spelled as
:mod:`vnicbond.config.values` says; the results are :mod:`vnicbond.config.settings`
objects. Nothing here touches the running system (:mod:`vnicbond.config.check` does).

Its size (about 400 lines) is the schema's: one class reads the document top to bottom, and
the rules across values need the keys read before them, so the file is the one place that
says what a valid configuration is; single values and the generic reader live elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_network
from types import MappingProxyType
from typing import Any

from yaml.nodes import MappingNode, Node

from vnicbond.config.errors import ConfigError, short
from vnicbond.config.reader import (
    FLOAT,
    INT,
    STR,
    NodeReader,
    compose,
    describe,
    join_choices,
    read_text,
)
from vnicbond.config.settings import (
    FUTURE_MODES,
    LOG_LEVELS,
    MIN_FAILURE_DETECTION_MS,
    MODES,
    PROBE_METHODS,
    Announce,
    Config,
    ControlConfig,
    GroupConfig,
    IPAddress,
    IPInterface,
    IPNetwork,
    MacLearning,
    MemberConfig,
    MetricsConfig,
    Probe,
    Route,
)
from vnicbond.config.values import (
    default_mac,
    format_ms,
    parse_address,
    parse_duration_ms,
    parse_ifname,
    parse_interface_address,
    parse_listen,
    parse_mac,
    parse_route_destination,
    parse_socket_path,
)

_TOP_KEYS = ("control", "metrics", "log_level", "groups")
_CONTROL_KEYS = ("socket",)
_METRICS_KEYS = ("listen",)
_GROUP_KEYS = (
    "name",
    "mode",
    "mtu",
    "mac",
    "addresses",
    "routes",
    "failure_detection_time",
    "failback",
    "announce",
    "probe",
    "mac_learning",
    "members",
)
_ROUTE_KEYS = ("to", "via")
_PROBE_KEYS = ("method", "targets", "transitive")
_MEMBER_KEYS = ("name", "test_address", "standby")
#: Group keys whose value is a mapping of bounded numbers only: the settings class it makes,
#: and per key its field, ``integer`` or ``duration`` (ms), and its bounds.
_NUMBERS: dict[str, tuple[type[Any], dict[str, tuple[str, str, int, int]]]] = {
    "announce": (Announce, {"count": ("count", "integer", 0, 100),
                            "interval": ("interval_ms", "duration", 1, 10_000)}),
    "mac_learning": (MacLearning, {"aging": ("aging_ms", "duration", 1000, 3_600_000),
                                   "limit": ("limit", "integer", 16, 65536)}),
}

_DURATION = "a duration such as '250ms' or '1s' or an integer of milliseconds"
_PREFIXED = "an address with a prefix such as 198.18.0.10/24"
_DESTINATION = "'default' or a network such as 10.0.0.0/8"


def parse_config(text: str, path: str = "<string>") -> Config:
    """Parse and validate configuration ``text``; ``path`` is only used in messages.

    Raises :class:`ConfigError` for YAML syntax errors and invalid configurations.
    """
    return _Builder(path).config(compose(text, path))


def load_config(path: str) -> Config:
    """Read, parse and validate the configuration file at ``path``.

    Raises :class:`ConfigError`, also when the file is missing, unreadable or not UTF-8.
    """
    return parse_config(read_text(path), path)


def _gateway_problem(
    via: IPAddress, to: IPNetwork | None, addresses: Sequence[IPInterface]
) -> str | None:
    """Why ``via`` cannot be the gateway of a route to ``to`` (None: default) in a group
    with ``addresses``, or None if it can."""
    if to is not None and via.version != to.version:
        return f"gateway {via} is IPv{via.version} but the destination {to} is IPv{to.version}"
    if via.is_unspecified or via.is_multicast or via.is_loopback:
        return f"{via} cannot be a gateway"
    same_family = [a for a in addresses if a.version == via.version]
    link_local_v6 = via.version == 6 and via.is_link_local
    if not same_family and not link_local_v6:
        return (f"gateway {via} needs an IPv{via.version} address of the group on its network "
                f"in 'addresses' (the group has none configured; a route through an address "
                f"that DHCP or SLAAC brings is theirs to add)")
    if any(a.ip == via for a in same_family):
        return f"gateway {via} is one of the group's own addresses"
    if not link_local_v6 and not any(via in a.network for a in same_family):
        own = ", ".join(str(a) for a in addresses)
        return f"gateway {via} is not on-link for any of the group's addresses ({own})"
    return None


class _Builder(NodeReader):
    """Walks the node tree of one document, validating it and building a Config."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        # Interface name -> (key path, "group" or "member") of its first use.
        self.ifnames: dict[str, tuple[str, str]] = {}
        # Data or test address -> key path of its first use.
        self.addresses: dict[IPAddress, str] = {}

    # ---- vnicbond's kinds of value

    def duration(self, node: Node, key: str, low: int, high: int | None = None) -> int:
        """A duration in ms: an unquoted integer (ms) or a string like ``250ms`` / ``1.5s``."""
        raw = self.scalar(node, key, (INT, STR, FLOAT), _DURATION)
        value: object = self.int_value(node, key) if node.tag == INT else raw
        ms = self.convert(node, key, parse_duration_ms, value)
        if ms < low:
            raise self.error(node, key, f"must be at least {format_ms(low)}, got {raw}")
        if high is not None and ms > high:
            raise self.error(node, key, f"must be at most {format_ms(high)}, got {raw}")
        return ms

    def ifname(self, node: Node, key: str) -> str:
        return self.convert(node, key, parse_ifname, self.string(node, key))

    def mac(self, node: Node, key: str) -> bytes:
        # With the core-schema resolver an unquoted MAC is a plain string; take the raw
        # text of any plain scalar anyway, so no number-like spelling can get in the way.
        text = self.scalar(node, key, (STR, INT, FLOAT), "a MAC address")
        return self.convert(node, key, parse_mac, text)

    def address(self, node: Node, key: str, what: str) -> IPAddress:
        """A plain address; ``what`` is what the message says was expected."""
        return self.convert(node, key, parse_address, self.scalar(node, key, (STR,), what))

    def interface_address(self, node: Node, key: str, what: str) -> IPInterface:
        """An address with a prefix, used nowhere else in the file; ``what`` names it."""
        text = self.scalar(node, key, (STR,), _PREFIXED)
        iface = self.convert(node, key, lambda t: parse_interface_address(t, what), text)
        previous = self.addresses.get(iface.ip)
        if previous is not None:
            raise self.error(
                node, key, f"{what} {iface.ip} is already used at {self.where(previous)}"
            )
        self.addresses[iface.ip] = key
        return iface

    def claim_ifname(self, name: str, node: Node, key: str, kind: str, group_key: str) -> None:
        """Refuse an interface name already used by a group or a member anywhere."""
        previous = self.ifnames.get(name)
        if previous is not None:
            prev_key, prev_kind = previous
            if kind == prev_kind == "group":
                message = f"duplicate group name {name!r} (also at {self.where(prev_key)})"
            elif kind == "member" and prev_key == f"{group_key}.name":
                message = f"member name {name!r} must differ from the group name"
            elif kind == prev_kind == "member":
                message = f"interface {name!r} is already a member at {self.where(prev_key)}"
            else:
                message = (
                    f"interface {name!r} is already used as a {prev_kind} name at "
                    f"{self.where(prev_key)}"
                )
            raise self.error(node, key, message)
        self.ifnames[name] = (key, kind)

    # ---- the document

    def config(self, root: Node | None) -> Config:
        if root is None:
            raise ConfigError(
                self.path, 1, "", "the configuration is empty; expected a mapping with 'groups'"
            )
        if not isinstance(root, MappingNode):
            raise self.error(
                root, "", f"the top-level document must be a mapping, got {describe(root)}"
            )
        top = self.mapping(root, "", _TOP_KEYS, required=("groups",))
        kwargs: dict[str, Any] = {}
        if "control" in top:
            kwargs["control"] = self.control(top["control"], "control")
        if "metrics" in top:
            kwargs["metrics"] = self.metrics(top["metrics"], "metrics")
        if "log_level" in top:
            kwargs["log_level"] = self.choice(
                top["log_level"], "log_level", LOG_LEVELS, "log level"
            )
        items = self.sequence(top["groups"], "groups", non_empty="at least one group is required")
        groups = tuple(self.group(item, f"groups[{i}]") for i, item in enumerate(items))
        return Config(
            path=self.path, groups=groups, key_lines=MappingProxyType(dict(self.lines)), **kwargs
        )

    def control(self, node: Node, key: str) -> ControlConfig:
        values = self.mapping(node, key, _CONTROL_KEYS)
        if "socket" not in values:
            return ControlConfig()
        socket_node, socket_key = values["socket"], f"{key}.socket"
        socket = self.string(socket_node, socket_key)
        socket = self.convert(socket_node, socket_key, parse_socket_path, socket)
        return ControlConfig(socket=socket)

    def metrics(self, node: Node, key: str) -> MetricsConfig:
        values = self.mapping(node, key, _METRICS_KEYS)
        if "listen" not in values:
            return MetricsConfig()
        listen_node, listen_key = values["listen"], f"{key}.listen"
        listen = self.string(listen_node, listen_key)
        return MetricsConfig(listen=self.convert(listen_node, listen_key, parse_listen, listen))

    def group(self, node: Node, key: str) -> GroupConfig:
        values = self.mapping(node, key, _GROUP_KEYS, required=("name", "members"))
        sub = {name: f"{key}.{name}" for name in _GROUP_KEYS}
        name = self.ifname(values["name"], sub["name"])
        self.claim_ifname(name, values["name"], sub["name"], "group", key)
        kwargs: dict[str, Any] = {"name": name}

        if "mode" in values:
            kwargs["mode"] = self.mode(values["mode"], sub["mode"])
        if "mtu" in values:
            kwargs["mtu"] = self.integer(values["mtu"], sub["mtu"], 68, 65535)
        if "mac" in values:
            kwargs["mac"] = self.mac(values["mac"], sub["mac"])
        else:
            kwargs["mac"] = default_mac(name)

        addresses: tuple[IPInterface, ...] = ()
        if "addresses" in values:
            addresses = tuple(
                self.interface_address(item, f"{sub['addresses']}[{i}]", "address")
                for i, item in enumerate(self.sequence(values["addresses"], sub["addresses"]))
            )
        kwargs["addresses"] = addresses

        if "routes" in values:
            routes: list[Route] = []
            for i, item in enumerate(self.sequence(values["routes"], sub["routes"])):
                routes.append(self.route(item, f"{sub['routes']}[{i}]", addresses, routes))
            kwargs["routes"] = tuple(routes)
        if "failure_detection_time" in values:
            kwargs["failure_detection_time_ms"] = self.duration(
                values["failure_detection_time"],
                sub["failure_detection_time"],
                MIN_FAILURE_DETECTION_MS,
            )
        if "failback" in values:
            kwargs["failback"] = self.boolean(values["failback"], sub["failback"])
        for name in _NUMBERS:
            if name in values:
                kwargs[name] = self.numbers(values[name], sub[name], name)
        if "probe" in values:
            kwargs["probe"] = self.probe(values["probe"], sub["probe"])

        members = tuple(
            self.member(item, f"{sub['members']}[{i}]", key)
            for i, item in enumerate(
                self.sequence(
                    values["members"], sub["members"], non_empty="at least one member is required"
                )
            )
        )
        if all(member.standby for member in members):
            raise self.error(
                values["members"],
                sub["members"],
                "at least one member must not be standby (all members are standby)",
            )
        kwargs["members"] = members
        return GroupConfig(**kwargs)

    def mode(self, node: Node, key: str) -> str:
        mode = self.string(node, key)
        if mode in FUTURE_MODES:
            raise self.error(
                node,
                key,
                f"mode {mode!r} is not supported yet (it arrives in a later version); "
                f"use {MODES[0]!r}",
            )
        if mode not in MODES:
            raise self.error(
                node,
                key,
                f"unknown mode {short(mode)} (valid modes: {join_choices(MODES)})",
            )
        return mode

    def route(
        self,
        node: Node,
        key: str,
        addresses: Sequence[IPInterface],
        earlier: Sequence[Route],
    ) -> Route:
        values = self.mapping(node, key, _ROUTE_KEYS, required=("to",))
        to_key, via_key = f"{key}.to", f"{key}.via"
        to_node = values["to"]
        to_text = self.scalar(to_node, to_key, (STR,), _DESTINATION)
        to = self.convert(to_node, to_key, parse_route_destination, to_text)

        via: IPAddress | None = None
        if "via" in values:
            via = self.address(values["via"], via_key, "a gateway IP address")
            problem = _gateway_problem(via, to, addresses)
            if problem is not None:
                raise self.error(values["via"], via_key, problem)
        if to is None:
            if via is None:
                raise self.error(
                    node,
                    via_key,
                    "a default route needs 'via' (the gateway; it also picks IPv4 or IPv6)",
                )
            to = ip_network("0.0.0.0/0" if via.version == 4 else "::/0")
        for index, route in enumerate(earlier):
            if route.to == to:
                previous = key.rsplit("[", 1)[0] + f"[{index}]"
                raise self.error(
                    to_node, to_key, f"duplicate route to {to} (also at {self.where(previous)})"
                )
        return Route(to=to, via=via)

    def numbers(self, node: Node, key: str, name: str) -> Any:
        """A mapping of bounded numbers (:data:`_NUMBERS`), as its settings object."""
        cls, fields = _NUMBERS[name]
        values = self.mapping(node, key, tuple(fields))
        kwargs: dict[str, Any] = {}
        for field, (attr, kind, low, high) in fields.items():
            if field in values:
                kwargs[attr] = getattr(self, kind)(values[field], f"{key}.{field}", low, high)
        return cls(**kwargs)

    def probe(self, node: Node, key: str) -> Probe:
        values = self.mapping(node, key, _PROBE_KEYS)
        method = Probe().method
        if "method" in values:
            method = self.choice(values["method"], f"{key}.method", PROBE_METHODS, "probe method")
        targets: list[IPAddress] = []
        if "targets" in values:
            seen: dict[IPAddress, str] = {}
            for i, item in enumerate(self.sequence(values["targets"], f"{key}.targets")):
                item_key = f"{key}.targets[{i}]"
                target = self.address(item, item_key, "a target IP address")
                if target in seen:
                    where = self.where(seen[target])
                    raise self.error(item, item_key, f"duplicate target {target} (also at {where})")
                if target.is_unspecified or target.is_multicast or target.is_loopback:
                    raise self.error(item, item_key, f"{target} cannot be a probe target")
                if method == "arp" and target.version != 4:
                    raise self.error(
                        item,
                        item_key,
                        f"probe method 'arp' needs IPv4 targets, {target} is IPv6 "
                        "(use method icmp)",
                    )
                seen[target] = item_key
                targets.append(target)
        transitive = Probe().transitive
        if "transitive" in values:
            transitive = self.boolean(values["transitive"], f"{key}.transitive")
        return Probe(method=method, targets=tuple(targets), transitive=transitive)

    def member(self, node: Node, key: str, group_key: str) -> MemberConfig:
        values = self.mapping(node, key, _MEMBER_KEYS, required=("name",))
        name_key = f"{key}.name"
        name = self.ifname(values["name"], name_key)
        self.claim_ifname(name, values["name"], name_key, "member", group_key)
        kwargs: dict[str, Any] = {"name": name}
        if "test_address" in values:
            kwargs["test_address"] = self.interface_address(
                values["test_address"], f"{key}.test_address", "test address"
            )
        if "standby" in values:
            kwargs["standby"] = self.boolean(values["standby"], f"{key}.standby")
        return MemberConfig(**kwargs)
