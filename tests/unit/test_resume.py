"""New code taking over the running daemon (``vnicbond upgrade``) goes on where the old code
was: the engine, its event log and the guests' MAC table, snapshotted as JSON by the old code
and resumed by the new one on the same (monotonic) clock.

Each test compares with what a fresh start would decide, which is what a restart without the
hand-over does: the difference is what the hand-over is for.
"""

from __future__ import annotations

import dataclasses
import json
import random
from typing import Any

import pytest

from tests.unit.test_engine import GROUP_MAC, MACS, Wire, config, events, of
from vnicbond.core.engine import GroupEngine
from vnicbond.core.events import Event, EventLog
from vnicbond.core.fdb import MacTable
from vnicbond.core.model import (
    Cause,
    SendAnnouncement,
    SetCarrier,
    SetForwarding,
    SetProbing,
    SetSpread,
)
from vnicbond.core.targets import MEMBER_PREFIX


def handed_over(w: Wire, cfg: Any = None, links: dict[str, bool] | None = None
                ) -> tuple[GroupEngine, list[Any]]:
    """The engine new code builds from ``w``'s snapshot (through JSON, as it travels), and
    the effects of its resume, ``w.now`` later by a few milliseconds."""
    kept = json.loads(json.dumps(w.engine.snapshot()))
    cfg = cfg or w.engine.cfg
    engine = GroupEngine(cfg, rng=random.Random(2))
    names = [m.name for m in cfg.members]
    links = links or dict.fromkeys(names, True)
    return engine, engine.resume(kept, links, {m: MACS[m] for m in names}, w.now + 0.05)


def fresh(cfg: Any, links: dict[str, bool] | None = None) -> GroupEngine:
    """What a start without a hand-over decides."""
    return Wire(cfg, links).engine


def test_the_active_member_stays_active_where_a_start_would_fail_back() -> None:
    cfg = dataclasses.replace(config(probe=False), failback=False)
    w = Wire(cfg)
    w.call(w.engine.link, "m0", False)
    w.call(w.engine.link, "m0", True)
    w.run(w.now + 5.0)  # m0 repaired; without failback m1 keeps the traffic
    assert w.engine.group.active == "m1"
    assert fresh(cfg).group.active == "m0"
    engine, effects = handed_over(w)
    assert engine.group.active == "m1"
    # The new datapath is told everything, once, and the moves are not counted again.
    assert of(effects, SetForwarding) == [SetForwarding("m1", frozenset({"m1"}))]
    assert of(effects, SetCarrier) == [SetCarrier(True)]
    assert [a.addresses for a in of(effects, SendAnnouncement)] == [
        ("198.18.0.10/24", "2001:db8::10/64")]
    assert ("member", "m1", "active", None, "upgrade") in events(effects)
    assert (engine.failovers, engine.address_moves) == (w.engine.failovers,
                                                        w.engine.address_moves) == (1, 2)


def test_a_member_failed_by_its_probes_stays_failed_until_they_are_repaired() -> None:
    w = Wire(config())
    w.run(w.now + 1.0)
    w.cut = {"m0"}  # silently: its link stays up
    w.run(w.now + 2.0)
    assert w.engine.group.member_state("m0").value == "failed"
    # A start sees only links, all up: it would put traffic back on the cut member.
    assert fresh(config()).group.active == "m0"
    engine, effects = handed_over(w)
    assert engine.group.active == "m1"
    assert engine.detector.probe_state("m0") == "failed"
    assert engine.detector.reason("m0", w.now) == "probes lost on every target"
    assert ("member", "m0", "failed", None, "upgrade") in events(effects)
    # and the statistics go on
    kept = {t.target: (t.sent, t.lost) for t in w.engine.detector.targets("m0")}
    assert {t.target: (t.sent, t.lost) for t in engine.detector.targets("m0")} == kept


def test_offline_members_stay_offline() -> None:
    w = Wire(config(probe=False))
    w.engine.set_offline("m0", True, w.now)
    engine, effects = handed_over(w)
    assert engine.group.member_state("m0").value == "offline"
    assert engine.group.active == "m1"
    assert ("member", "m0", "offline", None, "upgrade") in events(effects)


def test_a_link_that_changed_during_the_hand_over_counts() -> None:
    w = Wire(config(probe=False))
    engine, effects = handed_over(w, links={"m0": False, "m1": True})
    assert engine.group.active == "m1"
    assert engine.detector.reason("m0", w.now) == "link down"
    assert of(effects, SetForwarding) == [SetForwarding("m1", frozenset({"m1"}))]


def test_load_spreading_keeps_each_address_where_it_is() -> None:
    cfg = dataclasses.replace(
        config(probe=False, mode="load-spread",
               addresses="[198.18.0.10/24, 198.18.0.11/24, 198.18.0.12/24]"),
        failback=False)
    w = Wire(cfg)
    w.call(w.engine.link, "m0", False)
    w.call(w.engine.link, "m0", True)
    w.run(w.now + 5.0)  # without failback, m0 waits as a spare and m1 hosts everything
    hosts = w.engine.group.address_hosts()
    assert set(hosts.values()) == {"m1"}
    assert set(fresh(cfg).group.address_hosts().values()) == {"m0", "m1"}
    engine, effects = handed_over(w)
    assert engine.group.address_hosts() == hosts
    assert engine.group.member_state("m0").value == "standby"
    spread = of(effects, SetSpread)
    assert [s.active for s in spread] == [("m1",)] and dict(spread[0].hosts) == hosts


def test_a_member_no_longer_configured_is_forgotten() -> None:
    w = Wire(config(probe=False, members="m0 m1 m2"))
    w.engine.set_offline("m2", True, w.now)
    engine, _ = handed_over(w, cfg=config(probe=False))
    assert engine.group.members() == ["m0", "m1"] and engine.group.active == "m0"


@pytest.mark.parametrize("damage", [
    lambda k: k.pop("detector"),
    lambda k: k["detector"]["m0"].update(link_ups="soon"),
    lambda k: k["detector"]["m0"]["targets"].update({"198.18.0.2": {"sent": "many"}}),
    lambda k: k["group"].update(spread=5),
    lambda k: k.update(failovers=None),
])
def test_a_malformed_snapshot_is_refused(damage: Any) -> None:
    w = Wire(config())
    kept = json.loads(json.dumps(w.engine.snapshot()))
    damage(kept)
    with pytest.raises(ValueError, match="malformed"):
        GroupEngine(config()).resume(kept, dict.fromkeys(MACS, True), MACS, w.now)


def test_the_event_log_goes_on_numbering() -> None:
    log = EventLog()
    event = Event("ipmp0", "member", "m0", "active", None, Cause.START)
    for _ in range(3):
        log.record(event, 1.0)
    after = EventLog()
    after.restore(json.loads(json.dumps(log.snapshot())))
    assert after.since(0) == log.since(0)
    assert after.record(event, 2.0) == 4
    with pytest.raises(ValueError, match="malformed"):
        EventLog().restore({"seq": 3, "records": [{"kind": "member"}]})


def test_the_mac_table_keeps_its_macs_and_their_ages() -> None:
    table = MacTable(limit=3, aging=300.0)
    for i, when in enumerate((10.0, 11.0, 12.0, 13.0)):  # the first is evicted
        table.heard(bytes([2, 0, 0, 0, 0, i]), when)
    table.register({bytes.fromhex("020000000099")})
    table.changes()
    after = MacTable(limit=3, aging=300.0)
    after.restore(json.loads(json.dumps(table.snapshot())))
    assert list(after.learned.items()) == list(table.learned.items())
    assert after.registered == table.registered and after.evictions == 1
    added, removed = after.changes()  # reported to the new engine, which places them
    assert set(added) == set(table.learned) | table.registered and removed == []
    with pytest.raises(ValueError, match="not a MAC"):
        MacTable(3, 300.0).restore({"learned": [["02", 1.0]], "registered": [],
                                    "evictions": 0})


def test_load_spreading_puts_each_guest_mac_back_on_its_member() -> None:
    cfg = config(probe=False, mode="load-spread", addresses="[198.18.0.10/24, 198.18.0.11/24]")
    w = Wire(cfg)
    first, second = bytes.fromhex("02cc00000001"), bytes.fromhex("02cc00000002")
    w.call(w.engine.macs_changed, [first, second], [])
    hosts = dict(w.engine.guests.hosts)
    assert set(hosts.values()) == {"m0", "m1"}
    # The new code's table reports them least recently heard first: maybe the other order.
    again = fresh(cfg)
    again.macs_changed([second, first], [], w.now)
    assert again.guests.hosts != hosts  # what placing them afresh would do
    engine, _ = handed_over(w)
    engine.macs_changed([second, first], [], w.now)
    assert engine.guests.hosts == hosts
    assert engine.guests.home == w.engine.guests.home


def test_without_test_addresses_the_new_code_says_what_every_probe_socket_takes() -> None:
    """The members' sockets are adopted before the plan exists: the resume must set each
    member's probe sockets (the active one probes from the data address with the group's
    MAC, the standby transitively), or nothing would be probed after an upgrade."""

    linked = config(probe=False)  # no test address...
    w = Wire(dataclasses.replace(linked, probe=dataclasses.replace(linked.probe,
                                                                   transitive=True)))
    w.run(w.now + 1.0)
    assert w.engine.detector.probe_state("m0") == "ok"
    engine, effects = handed_over(w)
    assert of(effects, SetProbing)[:2] == [SetProbing("m0", (GROUP_MAC,), ()),
                                           SetProbing("m1", (), ())]
    assert engine.targets == {"m0": ("198.18.0.2",), "m1": (MEMBER_PREFIX + "m0",)}
    assert engine.detector.probe_state("m0") == "ok"
