"""The system's addresses and routes on the TAP, in the pure core (issue 13).

Which addresses are data addresses (:mod:`vnicbond.core.addresses`): the configured ones
until somebody removes them, every other address once no longer tentative, never an IPv6
link-local one, each with its source. What the engine does with them: a new address is placed
and announced (``announce.count`` rounds) from the member hosting it, cause ``system``; one
that goes is announced no more, and moves no more on a failover. Load spreading places a new
address on the member with the fewest and keeps the others where they were. Which targets
members probe (:mod:`vnicbond.core.targets`): the configured ones, or the gateways of the
routes through the TAP as the kernel has them, followed; the detector keeps what it knew of
targets that stay. The engine is driven as in ``test_engine.py`` (its :class:`Wire`).
"""

from __future__ import annotations

from ipaddress import ip_address
from typing import Any

import pytest

from tests.unit.test_engine import MACS, TARGET, Wire, events, of
from vnicbond.config import parse_config
from vnicbond.core.addresses import DataAddresses, TapAddress
from vnicbond.core.detector import DISABLED, UNKNOWN
from vnicbond.core.model import SendAnnouncement, SendProbeFrames, SetSpread
from vnicbond.core.placement import home_placement
from vnicbond.core.targets import group_targets, plan, probe_targets

V4, V6 = "198.18.0.10/24", "2001:db8::10/64"
DHCP, SLAAC, LINK_LOCAL = "198.18.0.50/24", "2001:db8::8c:1/64", "fe80::1/64"


def cfg(addresses: str = "[]", mode: str = "active-backup", targets: str | None = None,
        members: str = "m0 m1", routes: str = "", announce: int = 3) -> Any:
    """A group with test addresses .21, .22, ...; probe targets only if given."""
    probe = (f"    probe: {{targets: [{targets}]}}\n" if targets is not None
             else "    probe: {transitive: false}\n")
    lines = "".join(f"      - {{name: {m}, test_address: 198.18.0.{21 + i}/24}}\n"
                    for i, m in enumerate(members.split()))
    return parse_config(
        f"groups:\n  - name: ipmp0\n    mode: {mode}\n    addresses: {addresses}\n"
        f"    failure_detection_time: 700\n    announce: {{count: {announce}, interval: 100ms}}\n"
        f"{routes}{probe}    members:\n{lines}").groups[0]


def tap(*addresses: str, tentative: tuple[str, ...] = ()) -> list[TapAddress]:
    return [TapAddress(a, a in tentative) for a in addresses]


# -- which addresses are data addresses ---------------------------------------------------------
def test_configured_addresses_count_until_read_and_while_tentative() -> None:
    data = DataAddresses([V4, V6])
    assert data.data() == [V4, V6]  # nothing read yet
    changes = data.read(tap(V4, V6, tentative=(V6,)))
    assert data.data() == [V4, V6] and not changes.added and not changes.removed


def test_system_addresses_count_once_not_tentative_and_never_link_local() -> None:
    data = DataAddresses([V4])
    changes = data.read(tap(V4, LINK_LOCAL, SLAAC, tentative=(SLAAC,)))
    assert data.data() == [V4] and changes.added == ()
    changes = data.read(tap(V4, LINK_LOCAL, SLAAC, DHCP))
    assert changes.added == (SLAAC, DHCP)
    assert data.data() == [V4, SLAAC, DHCP]
    assert [data.source(a) for a in data.data()] == ["config", "system", "system"]


def test_a_configured_address_removed_by_hand_is_reported_once_and_not_put_back() -> None:
    data = DataAddresses([V4, V6])
    data.read(tap(V4, V6))
    changes = data.read(tap(V6))
    assert changes.removed == (V4,) and changes.removed_by_hand == (V4,)
    assert data.data() == [V6]
    assert data.read(tap(V6, DHCP)).removed_by_hand == ()  # said once
    changes = data.read(tap(V6, DHCP, V4))  # put back by hand: configured again
    assert changes.added == (V4,) and data.data() == [V4, V6, DHCP]
    assert data.source(V4) == "config"


def test_a_configured_address_not_yet_seen_is_not_taken_as_removed() -> None:
    """A reload adds a configured address; a reading from before it must not drop it."""
    data = DataAddresses([V4])
    data.read(tap(V4))
    data.reconfigure([V4, DHCP])
    assert data.read(tap(V4)).removed == () and data.data() == [V4, DHCP]


def test_system_addresses_keep_the_order_they_came_in() -> None:
    data = DataAddresses([])
    data.read(tap(DHCP))
    data.read(tap(SLAAC, DHCP))
    assert data.data() == [DHCP, SLAAC]
    assert data.read(tap(SLAAC)).removed == (DHCP,) and data.data() == [SLAAC]


def test_an_address_that_becomes_configured_is_a_config_address() -> None:
    data = DataAddresses([])
    data.read(tap(DHCP))
    data.reconfigure([DHCP])
    assert data.data() == [DHCP] and data.source(DHCP) == "config"


# -- the engine: announcements and moves ----------------------------------------------------------
def test_a_new_address_is_announced_from_the_active_member_count_times() -> None:
    w = Wire(cfg(targets=TARGET))
    changes, effects = w.engine.addresses_read(tap(LINK_LOCAL, DHCP), w.now)
    assert changes.added == (DHCP,)
    assert events(effects) == [("address", "m0", DHCP, None, "system")]
    assert of(effects, SendAnnouncement) == [SendAnnouncement("m0", w.engine.cfg.mac, (DHCP,))]
    rounds = of(w.run(w.now + 1.0), SendAnnouncement)
    assert rounds == [SendAnnouncement("m0", w.engine.cfg.mac, (DHCP,))] * 2
    assert w.engine.address_moves == 0  # a first placement is no move


def test_system_addresses_move_and_are_announced_on_a_failover() -> None:
    w = Wire(cfg(addresses=f"[{V4}]", targets=TARGET))
    w.engine.addresses_read(tap(V4, DHCP, SLAAC, LINK_LOCAL), w.now)
    effects = w.call(w.engine.link, "m0", False)
    assert of(effects, SendAnnouncement) == [
        SendAnnouncement("m1", w.engine.cfg.mac, (V4, DHCP, SLAAC))]
    assert w.engine.address_moves == 3
    assert [(e[2], e[3], e[1]) for e in events(effects) if e[0] == "address"] == [
        (V4, "m0", "m1"), (DHCP, "m0", "m1"), (SLAAC, "m0", "m1")]


def test_an_address_that_left_is_no_longer_announced() -> None:
    w = Wire(cfg(addresses=f"[{V4}]", targets=TARGET))
    w.engine.addresses_read(tap(V4, DHCP), w.now)
    changes, effects = w.engine.addresses_read(tap(V4), w.now)
    assert changes.removed == (DHCP,) and effects == []
    effects = w.call(w.engine.link, "m0", False)
    assert of(effects, SendAnnouncement) == [SendAnnouncement("m1", w.engine.cfg.mac, (V4,))]


def test_nothing_read_that_changes_nothing_decides_nothing() -> None:
    w = Wire(cfg(addresses=f"[{V4}]", targets=TARGET))
    assert w.engine.addresses_read(tap(V4, LINK_LOCAL), w.now)[1] == []


def test_no_member_usable_places_the_address_when_one_is() -> None:
    w = Wire(cfg(targets=TARGET), links={"m0": False, "m1": False})
    _, effects = w.engine.addresses_read(tap(DHCP), w.now)
    assert of(effects, SendAnnouncement) == [] and events(effects) == []
    effects = w.call(w.engine.link, "m1", True) + w.run(w.now + 1.0)  # one answer repairs
    assert of(effects, SendAnnouncement)[0] == SendAnnouncement("m1", w.engine.cfg.mac, (DHCP,))


def test_load_spread_places_a_new_address_on_the_fewest_and_moves_no_other() -> None:
    w = Wire(cfg(addresses=f"[{V4}]", mode="load-spread", targets=TARGET))
    assert w.engine.group.address_hosts() == {V4: "m0"}
    _, effects = w.engine.addresses_read(tap(V4, DHCP), w.now)
    assert w.engine.group.address_hosts() == {V4: "m0", DHCP: "m1"}
    assert of(effects, SetSpread) == [SetSpread(("m0", "m1"), ((V4, "m0"), (DHCP, "m1")))]
    assert of(effects, SendAnnouncement) == [SendAnnouncement("m1", MACS["m1"], (DHCP,))]
    assert events(effects) == [("address", "m1", DHCP, None, "system")]
    # It goes: the table is set without it, nothing else moves or is announced.
    _, effects = w.engine.addresses_read(tap(V4), w.now)
    assert of(effects, SetSpread) == [SetSpread(("m0", "m1"), ((V4, "m0"),))]
    assert of(effects, SendAnnouncement) == [] and events(effects) == []


def test_load_spread_moves_a_system_address_with_its_member_and_home_again() -> None:
    w = Wire(cfg(addresses=f"[{V4}]", mode="load-spread", targets=TARGET))
    w.engine.addresses_read(tap(V4, DHCP), w.now)
    effects = w.call(w.engine.link, "m1", False)
    assert w.engine.group.address_hosts() == {V4: "m0", DHCP: "m0"}
    assert of(effects, SendAnnouncement) == [SendAnnouncement("m0", MACS["m0"], (DHCP,))]
    w.call(w.engine.link, "m1", True)
    w.run(w.now + 2.0)  # link-only repair: 10 probe intervals
    assert w.engine.group.address_hosts() == {V4: "m0", DHCP: "m1"}  # failback: home


def test_homes_stay_when_addresses_come_and_go() -> None:
    home = home_placement(["a", "b", "c", "d"], ["m0", "m1"])
    assert home == {"a": "m0", "b": "m1", "c": "m0", "d": "m1"}
    # "a" goes: the others keep their homes (a plain recomputation would move b, c, d).
    assert home_placement(["b", "c", "d"], ["m0", "m1"], keep=home) == {
        "b": "m1", "c": "m0", "d": "m1"}
    # A new one goes to the member with the fewest homes.
    assert home_placement(["b", "c", "d", "e"], ["m0", "m1"], keep=home)["e"] == "m0"


# -- targets from the routes ----------------------------------------------------------------------
GW, GW2, GW6 = ip_address("198.18.0.1"), ip_address("198.18.0.2"), ip_address("fe80::1")


def test_targets_are_configured_or_else_the_kernels_gateways() -> None:
    assert probe_targets(cfg(targets=TARGET), [GW]) == (ip_address(TARGET),)
    assert probe_targets(cfg(), [GW2, GW6, GW2]) == (GW2, GW6)
    # Until the kernel's table is read, the configured routes' gateways stand for it.
    routes = "    routes: [{to: default, via: 198.18.0.1}]\n"
    assert probe_targets(cfg(addresses=f"[{V4}]", routes=routes)) == (GW,)
    assert probe_targets(cfg(addresses=f"[{V4}]", routes=routes), []) == ()
    # Members probe the gateways of their test address's family.
    targets = group_targets(cfg(), [GW6, GW], {}, {4})
    assert plan(cfg(), targets, MACS, {})["m0"].targets == (str(GW),)


def test_target_mode_per_member() -> None:
    text = ("groups:\n  - name: ipmp0\n    probe: {method: arp}\n    members:\n"
            "      - {name: m0, test_address: 198.18.0.21/24}\n"
            "      - {name: m1, test_address: '2001:db8::22/64'}\n      - {name: m2}\n")
    group = parse_config(text).groups[0]
    targets = group_targets(group, [GW], {}, {4, 6})
    # m1 cannot probe IPv6 with ARP, m2 has no test address: both probe m0, transitively.
    assert [p.mode for p in plan(group, targets, MACS, {}).values()] == [
        "routes", "transitive", "transitive"]
    c = cfg(targets=TARGET)
    assert plan(c, group_targets(c, [], {}, {4}), MACS, {})["m0"].mode == "configured"


def test_a_gateway_from_the_routes_is_probed_and_its_loss_detected() -> None:
    w = Wire(cfg())
    assert w.engine.targets == {"m0": (), "m1": ()}
    assert w.engine.detector.probe_state("m0") == DISABLED
    w.call(w.engine.gateways_read, [ip_address(TARGET)])
    assert w.engine.detector.probe_state("m0") == UNKNOWN
    assert w.engine.probe_sockets("m0").questions == (ip_address("198.18.0.21").packed,)
    effects = w.run(w.now + 1.0)
    assert {e.member for e in of(effects, SendProbeFrames)} == {"m0", "m1"}
    assert w.engine.detector.probe_state("m0") == "ok"
    w.cut = {"m0"}  # a silent cut of the active member: detected as with configured targets
    effects = w.run(w.now + 1.5)
    assert w.engine.group.active == "m1"
    assert ("member", "m0", "failed", "active", "probe") in events(effects)


def test_gateways_that_stay_keep_their_statistics_and_the_same_list_changes_nothing() -> None:
    w = Wire(cfg())
    w.call(w.engine.gateways_read, [ip_address(TARGET)])
    w.run(w.now + 1.0)
    sent = w.engine.detector.targets("m0")[0].sent
    assert w.call(w.engine.gateways_read, [ip_address(TARGET)]) == []
    w.call(w.engine.gateways_read, [ip_address(TARGET), GW])
    assert [t.sent for t in w.engine.detector.targets("m0")] == [sent, 0]


def test_no_gateway_left_means_link_state_alone() -> None:
    w = Wire(cfg())
    w.call(w.engine.gateways_read, [ip_address(TARGET)])
    w.run(w.now + 1.0)
    w.cut = {"m0"}
    w.call(w.engine.gateways_read, [])
    w.run(w.now + 2.0)
    assert w.engine.detector.probe_state("m0") == DISABLED  # (targets looked for anew)
    assert w.engine.group.active == "m0"  # its link is up: healthy


@pytest.mark.parametrize("targets", [TARGET, None])
def test_configured_targets_ignore_the_routes(targets: str | None) -> None:
    w = Wire(cfg(targets=targets))
    w.call(w.engine.gateways_read, [GW])
    want = (TARGET,) if targets else (str(GW),)
    assert w.engine.targets["m0"] == want
