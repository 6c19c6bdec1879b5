"""Who probes what from where (:mod:`vnicbond.core.targets`, :mod:`vnicbond.core.probing`), and
the prober's frames for sources that are not test addresses (:mod:`vnicbond.core.prober`):
data addresses, link-local addresses, link-layer probes between members, all-hosts pings."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

from scapy.layers.inet import ICMP, IP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether

from vnicbond.config import parse_config
from vnicbond.core.prober import Prober, ProbingMember
from vnicbond.core.probing import Probing
from vnicbond.core.targets import (
    CONFIGURED,
    DATA,
    DISABLED,
    LINK_LOCAL,
    MULTICAST,
    ROUTES,
    TEST,
    TRANSITIVE,
    GroupTargets,
    Source,
    data_sources,
    group_targets,
    plan,
)
from vnicbond.wire import transitive
from vnicbond.wire.mac import format_mac, link_local

GROUP_MAC = bytes.fromhex("020000000010")
MACS = {"m0": bytes.fromhex("02aa00000000"), "m1": bytes.fromhex("02aa00000001"),
        "m2": bytes.fromhex("02aa00000002")}
V4, V4B, V6 = "198.18.0.10/24", "198.18.0.11/24", "2001:db8::10/64"
PEER, PEER6, ROUTER6 = "198.18.0.2", "2001:db8::2", "fe80::1"
PEER_MAC = bytes.fromhex("02bb000000fe")
SECRET = bytes(range(16))


def cfg(mode: str = "active-backup", members: str = "m0 m1", addresses: str = f"[{V4}, {V6}]",
        probe: str = f"{{targets: [{PEER}]}}", tests: dict[str, str] | None = None) -> Any:
    lines = "".join(f"      - {{name: {m}"
                    + (f", test_address: '{tests[m]}'" if tests and m in tests else "") + "}\n"
                    for m in members.split())
    return parse_config(
        f"groups:\n  - name: ipmp0\n    mode: {mode}\n    mac: {format_mac(GROUP_MAC)}\n"
        f"    addresses: {addresses}\n    failure_detection_time: 700\n"
        f"    probe: {probe}\n    members:\n{lines}").groups[0]


def plan_of(c: Any, hosts: dict[str, str | None], targets: GroupTargets | None = None,
            proxy: str | None = None) -> dict[str, Any]:
    macs = {m.name: MACS[m.name] for m in c.members}
    if targets is None:
        targets = group_targets(c, None, {}, {4, 6})
    return plan(c, targets, macs, data_sources(c, hosts, macs, proxy))


# -- targets per family -------------------------------------------------------------------------
def test_targets_are_configured_else_the_routes_else_found_per_family() -> None:
    c = cfg(probe=f"{{targets: [{PEER}]}}")
    assert group_targets(c, [ip_address(ROUTER6)], {}, {4, 6}) == GroupTargets(
        (ip_address(PEER),), (), CONFIGURED, DISABLED)
    c = cfg(probe="{}")
    found = {4: (ip_address(PEER),), 6: (ip_address(PEER6),)}
    assert group_targets(c, [ip_address(ROUTER6)], found, {4, 6}) == GroupTargets(
        (ip_address(PEER),), (ip_address(ROUTER6),), MULTICAST, ROUTES)
    # A group with no IPv6 address does not look for IPv6 hosts.
    assert group_targets(c, [], found, {4}).mode6 == DISABLED


# -- sources ---------------------------------------------------------------------------------------
def test_active_backup_active_probes_from_the_data_address_the_standby_transitively() -> None:
    c = cfg(addresses=f"[{V4}]")
    p = plan_of(c, {V4: "m0"})
    assert p["m0"].sources == (Source(ip_address("198.18.0.10"), GROUP_MAC, DATA),)
    assert (p["m0"].targets, p["m0"].mode) == ((PEER,), CONFIGURED)
    assert (p["m1"].sources, p["m1"].targets, p["m1"].mode) == ((), ("member:m0",), TRANSITIVE)
    assert not p["m0"].sources[0].answers  # the host's stack answers ARP for it
    # The failover turns it round.
    p = plan_of(c, {V4: "m1"})
    assert p["m1"].source(4) is not None and p["m0"].targets == ("member:m1",)


def test_ipv6_targets_are_probed_from_every_members_own_link_local() -> None:
    c = cfg(addresses=f"[{V6}]", probe=f"{{targets: ['{ROUTER6}']}}")
    p = plan_of(c, {V6: "m0"})
    for name in ("m0", "m1"):
        source = p[name].source(6)
        assert source == Source(link_local(MACS[name]), MACS[name], LINK_LOCAL)
        assert source.answers and p[name].targets == (ROUTER6,)


def test_load_spreading_hosts_probe_with_their_own_mac_the_others_probe_them() -> None:
    c = cfg(mode="load-spread", members="m0 m1 m2", addresses=f"[{V4}, {V4B}]")
    p = plan_of(c, {V4: "m0", V4B: "m1"})
    assert p["m0"].source(4) == Source(ip_address("198.18.0.10"), MACS["m0"], DATA)
    assert p["m1"].source(4) == Source(ip_address("198.18.0.11"), MACS["m1"], DATA)
    assert p["m2"].targets == ("member:m0", "member:m1") and p["m2"].mode == TRANSITIVE


def test_a_test_address_comes_first_and_transitive_false_is_the_old_rule() -> None:
    c = cfg(addresses=f"[{V4}]", tests={"m1": "198.18.0.22/24"})
    p = plan_of(c, {V4: "m0"})
    assert p["m1"].sources == (Source(ip_address("198.18.0.22"), MACS["m1"], TEST),)
    c = cfg(addresses=f"[{V4}]", probe=f"{{targets: [{PEER}], transitive: false}}",
            tests={"m1": "198.18.0.22/24"})
    p = plan_of(c, {V4: "m0"})
    assert p["m0"].targets == () and p["m0"].mode == DISABLED
    assert p["m1"].targets == (PEER,)


def test_with_no_data_address_carried_a_proxy_probes_for_the_group_in_turn() -> None:
    c = cfg(addresses=f"[{V4}]")
    probing = Probing(c, secret=SECRET)
    links = {"m0": True, "m1": True}
    probing.update(c, {V4: None}, MACS, links, 10.0)
    assert probing.proxy == "m0" and probing.plan["m0"].source(4) is not None
    assert probing.plan["m1"].targets == ("member:m0",)
    # Not repaired within two failure detection times (1.4 s): the next member's turn.
    assert not probing.rotate({"m0": False}, links, 11.39)
    assert probing.rotate({"m0": False}, links, 11.4)
    probing.update(c, {V4: None}, MACS, links, 11.4)
    assert probing.proxy == "m1" and probing.plan["m1"].source(4) is not None
    # Once a member carries the address again there is no proxy.
    probing.update(c, {V4: "m1"}, MACS, links, 12.0)
    assert probing.proxy is None


# -- the prober's frames -------------------------------------------------------------------------
def prober(sources: dict[str, tuple[Source, ...]], probers: dict[str, dict[str, bytes]],
           targets: tuple[str, ...] = (PEER,), secret: bytes = SECRET) -> Prober:
    return Prober("icmp", [ProbingMember(m, MACS[m], sources.get(m, ()),
                                         tuple(ip_address(t) for t in targets),
                                         probers.get(m, {}))
                           for m in MACS], token=b"T" * 8, ident=0x4242, secret=secret)


DATA_SOURCE = Source(ip_address("198.18.0.10"), GROUP_MAC, DATA)


def test_a_link_layer_probe_is_answered_by_the_member_probed_and_counted_once() -> None:
    p = prober({"m0": (DATA_SOURCE,)}, {"m1": {"m0": MACS["m0"]}})
    [request] = p.probe("m1", "member:m0", 7)
    assert request[12:14] == b"\x88\xb5" and request[:6] == MACS["m0"]
    answered = p.receive("m0", request)
    [reply] = answered.echoes  # authenticated: not under the rate limit of answers
    assert p.receive("m1", reply).replies == (("member:m0", 7),)
    assert p.receive("m1", reply).replies == ()  # a replay counts for nothing


def test_forged_or_misdirected_link_layer_answers_count_for_nothing() -> None:
    p = prober({"m0": (DATA_SOURCE,)}, {"m1": {"m0": MACS["m0"]}})
    [request] = p.probe("m1", "member:m0", 7)
    forger = prober({"m0": (DATA_SOURCE,)}, {"m1": {"m0": MACS["m0"]}}, secret=bytes(16))
    assert forger.receive("m0", request).echoes == ()  # not ours: not answered
    req = transitive.parse(request)
    assert req is not None
    forged = transitive.reply(bytes(16), req)
    assert p.receive("m1", forged).replies == ()
    # A genuine answer that reaches another member, or comes from a member not probed.
    [reply] = p.receive("m0", request).echoes
    assert p.receive("m2", reply).replies == ()


def test_echo_replies_to_a_data_address_match_on_its_mac_and_address() -> None:
    p = prober({"m0": (DATA_SOURCE,)}, {})
    p.members["m0"].neighbors[ip_address(PEER)] = PEER_MAC
    [echo] = p.probe("m0", PEER, 9)
    pkt = Ether(echo)
    assert pkt.src == format_mac(GROUP_MAC) and pkt[IP].src == "198.18.0.10"

    def reply(dst_mac: str) -> bytes:
        return bytes(Ether(src=format_mac(PEER_MAC), dst=dst_mac) / IP(src=PEER, dst="198.18.0.10")
                     / ICMP(type=0, id=0x4242, seq=9) / pkt[ICMP].payload)

    assert p.receive("m0", reply(format_mac(GROUP_MAC))).replies == ((PEER, 9),)
    assert p.receive("m0", reply(format_mac(MACS["m0"]))).replies == ()


def test_the_host_answers_arp_for_a_data_address_the_daemon_for_a_link_local() -> None:
    p = prober({"m0": (DATA_SOURCE,)}, {})
    question = bytes(Ether(src=format_mac(PEER_MAC), dst="ff:ff:ff:ff:ff:ff")
                     / ARP(op=1, hwsrc=format_mac(PEER_MAC), psrc=PEER, pdst="198.18.0.10"))
    assert p.receive("m0", question).answers == ()
    ll = link_local(MACS["m1"])
    p = prober({"m1": (Source(ll, MACS["m1"], LINK_LOCAL),)}, {}, targets=(ROUTER6,))
    ns = bytes(Ether(src=format_mac(PEER_MAC), dst="33:33:ff:00:00:01")
               / IPv6(src=ROUTER6, dst="ff02::1:ff00:1", hlim=255)
               / ICMPv6ND_NS(tgt=str(ll)))
    [na] = p.receive("m1", ns).answers
    assert Ether(na).src == format_mac(MACS["m1"])


def test_an_all_hosts_ping_finds_the_hosts_that_answer_it() -> None:
    ll = link_local(MACS["m0"])
    p = prober({"m0": (DATA_SOURCE, Source(ll, MACS["m0"], LINK_LOCAL))}, {}, targets=())
    [ping4] = p.discover("m0", 4, 300)
    assert Ether(ping4).dst == "01:00:5e:00:00:01" and Ether(ping4)[IP].dst == "224.0.0.1"
    [ping6] = p.discover("m0", 6, 301)
    assert Ether(ping6).dst == "33:33:00:00:00:01"
    payload = bytes(Ether(ping6)[IPv6].payload)[8:]
    reply6 = bytes(Ether(src=format_mac(PEER_MAC), dst=format_mac(MACS["m0"]))
                   / IPv6(src=PEER6, dst=str(ll)) / ICMPv6EchoReply(id=0x4242, seq=301,
                                                                    data=payload))
    assert p.receive("m0", reply6).found == ((ip_address(PEER6), False),)
    # An answer to a ping that was not an all-hosts one finds nothing.
    stale = bytes(Ether(src=format_mac(PEER_MAC), dst=format_mac(MACS["m0"]))
                  / IPv6(src=PEER6, dst=str(ll)) / ICMPv6EchoReply(id=0x4242, seq=302,
                                                                   data=payload))
    assert p.receive("m0", stale).found == ()
