"""The group's MTU: following the TAP's, raising the members, rolling a refused change back
(vnicbond.core.mtu, no I/O), and what carries it out: the datapath's size check, the record of
each member's MTU for its restoration, the refusal's event as the operator reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_datapath_drops import GROUP_MAC, MIN_FRAME, Rig, frame
from vnicbond import views
from vnicbond.core.events import Event, EventLog
from vnicbond.core.model import Cause
from vnicbond.core.mtu import TAP, FollowMtu, MtuFollower, Refusal, SetMtus
from vnicbond.system import isolation as iso
from vnicbond.system.netlink import LinkInfo

LOW = {"m0": 1500, "m1": 1500}


def follow(f: MtuFollower, mtu: int, members: dict[str, int] | None = None) -> SetMtus | None:
    """The TAP reports ``mtu``; the change the follower starts for it."""
    f.tap_reported(mtu)
    return f.next(LOW if members is None else members)


# -- ip link set ipmp0 mtu N ---------------------------------------------------------------------


def test_a_report_of_the_mtu_in_force_changes_nothing() -> None:
    f = MtuFollower("ipmp0", 1500)
    f.tap_reported(1500)  # a carrier change, a promiscuity change: the same MTU
    assert not f.wanted()
    assert f.next(LOW) is None


def test_raising_the_tap_raises_the_members_below_it_in_order_and_then_stands() -> None:
    f = MtuFollower("ipmp0", 1500)
    change = follow(f, 9000, {"m0": 1500, "m1": 9216, "m2": 4000})
    assert change == SetMtus((("m0", 9000), ("m2", 9000)))  # not the TAP: it has it already
    assert f.busy and f.mtu == 1500  # nothing follows before the members took it
    assert f.finished(2) == [FollowMtu(9000),
                             Event("ipmp0", "mtu", None, "9000", "1500", Cause.LINK)]
    assert f.mtu == 9000 and not f.busy


def test_lowering_the_tap_leaves_the_members_and_lowers_the_checks() -> None:
    f = MtuFollower("ipmp0", 9000)
    change = follow(f, 1500, {"m0": 9000, "m1": 9000})
    assert change == SetMtus(())
    assert f.finished(0) == [FollowMtu(1500),
                             Event("ipmp0", "mtu", None, "1500", "9000", Cause.LINK)]


def test_a_member_that_refuses_undoes_the_others_and_sets_the_tap_back() -> None:
    f = MtuFollower("ipmp0", 1500)
    change = follow(f, 9000, {"m0": 1500, "m1": 1500, "m2": 1500})
    assert change is not None and len(change.steps) == 3
    effects = f.finished(1, Refusal("m1", "Invalid argument"))
    assert effects == [
        SetMtus((("m0", 1500), (TAP, 1500))),
        Event("ipmp0", "mtu_refused", "m1", "9000", "1500", Cause.LINK, "Invalid argument")]
    assert f.mtu == 1500 and not f.busy


def test_the_undo_goes_in_reverse_order_to_each_members_own_mtu() -> None:
    f = MtuFollower("ipmp0", 1500)
    follow(f, 9000, {"m0": 1500, "m1": 4000, "m2": 1500})
    undo = f.finished(2, Refusal("m2", "Invalid argument"))[0]
    assert undo == SetMtus((("m1", 4000), ("m0", 1500), (TAP, 1500)))


def test_reports_of_a_refused_mtu_queued_before_the_tap_went_back_are_stale() -> None:
    f = MtuFollower("ipmp0", 1500)
    follow(f, 9000)
    f.finished(0, Refusal("m0", "Invalid argument"))
    f.tap_reported(9000)  # sent before the TAP was set back (a carrier change, say)
    assert not f.wanted()
    f.tap_reported(1500)  # the TAP set back
    assert not f.wanted()
    assert follow(f, 9000) == SetMtus((("m0", 9000), ("m1", 9000)))  # tried again: followed


def test_reports_during_a_change_are_followed_after_it_the_latest_only() -> None:
    f = MtuFollower("ipmp0", 1500)
    follow(f, 9000)
    f.tap_reported(9000)  # the change under way
    assert not f.wanted()
    f.tap_reported(4000)
    f.tap_reported(3000)
    assert f.wanted()
    assert f.next(LOW) is None  # one change at a time
    f.finished(2)
    assert f.next({"m0": 9000, "m1": 9000}) == SetMtus(())
    assert f.finished(0)[0] == FollowMtu(3000)


def test_a_refusal_leaves_the_tap_alone_when_a_newer_mtu_was_set_meanwhile() -> None:
    f = MtuFollower("ipmp0", 1500)
    follow(f, 9000)
    f.tap_reported(4000)  # someone set the TAP again: it is not ours to set back
    effects = f.finished(1, Refusal("m1", "Invalid argument"))
    assert effects[0] == SetMtus((("m0", 1500),))
    assert follow(f, 4000) == SetMtus((("m0", 4000), ("m1", 4000)))


# -- a reload ---------------------------------------------------------------------------------


def test_a_reload_raises_the_members_first_and_sets_the_tap_last() -> None:
    f = MtuFollower("ipmp0", 1500)
    f.configured(9000)
    assert f.wanted()
    assert f.next({"m0": 1500, "m1": 9000}) == SetMtus((("m0", 9000), (TAP, 9000)))
    f.tap_reported(9000)  # the TAP's own report of the step
    assert f.finished(2) == [FollowMtu(9000),
                             Event("ipmp0", "mtu", None, "9000", "1500", Cause.RELOAD)]
    assert not f.wanted()


def test_a_reload_refused_by_a_member_leaves_the_tap_untouched() -> None:
    f = MtuFollower("ipmp0", 1500)
    f.configured(9000)
    f.next(LOW)
    effects = f.finished(1, Refusal("m1", "Invalid argument"))
    assert effects == [
        SetMtus((("m0", 1500),)),
        Event("ipmp0", "mtu_refused", "m1", "9000", "1500", Cause.RELOAD, "Invalid argument")]


def test_a_reload_refused_by_the_tap_undoes_the_members() -> None:
    f = MtuFollower("ipmp0", 1500)
    f.configured(9000)
    f.next(LOW)
    effects = f.finished(2, Refusal(TAP, "Invalid argument"))
    assert effects[0] == SetMtus((("m1", 1500), ("m0", 1500)))
    assert effects[1] == Event("ipmp0", "mtu_refused", None, "9000", "1500", Cause.RELOAD,
                               "Invalid argument")


def test_a_reload_goes_before_a_report_waiting() -> None:
    f = MtuFollower("ipmp0", 1500)
    f.tap_reported(4000)
    f.configured(9000)
    assert f.next(LOW) == SetMtus((("m0", 9000), ("m1", 9000), (TAP, 9000)))


def test_a_reload_to_the_mtu_in_force_reports_nothing() -> None:
    f = MtuFollower("ipmp0", 9000)
    f.configured(9000)
    assert f.next({"m0": 9000}) == SetMtus(((TAP, 9000),))
    assert f.finished(1) == []


# -- members that join --------------------------------------------------------------------------


def test_a_member_that_joins_is_raised_to_the_group_mtu_or_the_one_being_set() -> None:
    f = MtuFollower("ipmp0", 9000)
    assert f.member_target(1500) == 9000
    assert f.member_target(9000) is None
    assert f.member_target(9216) is None  # never lowered
    g = MtuFollower("ipmp0", 1500)
    follow(g, 9000)
    assert g.member_target(1500) == 9000


# -- the datapath's size check follows ------------------------------------------------------------


def test_the_datapath_takes_frames_up_to_the_group_mtu_it_is_given() -> None:
    rig = Rig()
    try:
        rig.set_mode("active-backup")
        jumbo = frame(GROUP_MAC, body=bytes(8000 - MIN_FRAME + 10))
        rig.from_wire("a", [jumbo])
        assert rig.to_tap() == [] and rig.counted() == {("a", "oversize"): 1}
        rig.dp.set_group_mtu(9000)
        rig.from_wire("a", [jumbo])
        assert rig.to_tap() == [jumbo]
        rig.dp.set_group_mtu(1500)
        rig.from_wire("a", [jumbo])
        assert rig.to_tap() == [] and rig.counted() == {("a", "oversize"): 2}
    finally:
        rig.close()


# -- each member's MTU recorded before its first change, and given back ---------------------------


class FakeLinks:
    """netlink's get_link and set_mtu over a dict of MTUs; a name in ``refuse`` is refused."""

    def __init__(self, mtus: dict[str, int], refuse: tuple[str, ...] = ()) -> None:
        self.mtus = mtus
        self.refuse = refuse

    def get_link(self, name: str) -> LinkInfo | None:
        if name not in self.mtus:
            return None
        return LinkInfo(index=1, name=name, admin_up=True, carrier=True, mtu=self.mtus[name])

    def set_mtu(self, name: str, mtu: int) -> None:
        if name in self.refuse:
            raise OSError(22, "Invalid argument")
        self.mtus[name] = mtu

    def set_link_up(self, name: str, up: bool) -> None:
        pass


@pytest.fixture
def links(monkeypatch: pytest.MonkeyPatch) -> FakeLinks:
    fake = FakeLinks({"m0": 1500, "m1": 4000})
    for name in ("get_link", "set_mtu", "set_link_up"):
        monkeypatch.setattr(iso.netlink, name, getattr(fake, name))
    monkeypatch.setattr(iso, "_nft", lambda script, check=True: None)
    return fake


def saved_state(path: Path) -> dict[str, Any]:
    return {m["name"]: m for m in json.loads(path.read_text())["members"]}


def test_a_members_first_mtu_is_recorded_before_it_changes_and_restored(
        links: FakeLinks, tmp_path: Path) -> None:
    state = tmp_path / "ipmp0.state"
    isolation = iso.Isolation("ipmp0", ["m0", "m1"], str(state))
    isolation.saved = [iso.SavedMember("m0", True, None), iso.SavedMember("m1", True, None)]
    isolation.set_mtu("m0", 9000)
    isolation.set_mtu("m0", 4000)  # a later change: the first MTU stays the one recorded
    assert links.mtus == {"m0": 4000, "m1": 4000}
    assert saved_state(state)["m0"]["mtu"] == 1500
    assert saved_state(state)["m1"]["mtu"] is None  # never changed: nothing to give back
    isolation.restore()
    assert links.mtus == {"m0": 1500, "m1": 4000}


def test_a_crash_leaves_the_record_and_the_next_start_gives_the_mtu_back(
        links: FakeLinks, tmp_path: Path) -> None:
    state = tmp_path / "ipmp0.state"
    isolation = iso.Isolation("ipmp0", ["m0"], str(state))
    isolation.saved = [iso.SavedMember("m0", True, None)]
    isolation.set_mtu("m0", 9000)
    # kill -9 here: the next start restores from the file
    assert iso.recover_stale(str(state)) is not None
    assert links.mtus["m0"] == 1500 and not state.exists()


def test_a_refused_mtu_records_but_changes_nothing(links: FakeLinks, tmp_path: Path) -> None:
    links.refuse = ("m0",)
    isolation = iso.Isolation("ipmp0", ["m0"], str(tmp_path / "s"))
    isolation.saved = [iso.SavedMember("m0", True, None)]
    with pytest.raises(OSError, match="Invalid argument"):
        isolation.set_mtu("m0", 9000)
    assert links.mtus["m0"] == 1500


def test_a_state_file_from_before_mtus_were_recorded_still_restores(
        links: FakeLinks, tmp_path: Path) -> None:
    state = tmp_path / "old.state"
    state.write_text(json.dumps({"pid": 0, "group": "ipmp0", "table": "vnicbond_ipmp0",
                                 "members": [{"name": "m0", "was_up": True,
                                              "disable_ipv6": None}]}))
    iso.recover_stale(str(state))
    assert links.mtus["m0"] == 1500 and not state.exists()


# -- what the operator reads -------------------------------------------------------------------


def test_a_refusal_names_the_member_the_mtu_and_the_kernels_reason() -> None:
    event = Event("ipmp0", "mtu_refused", "m1", "9000", "1500", Cause.LINK, "Invalid argument")
    assert event.log_line() == ("ipmp0: mtu 9000 refused: member m1 cannot take it "
                                "(Invalid argument); the group stays at 1500 (link)")
    log = EventLog()
    log.record(event, 0.0)
    log.record(Event("ipmp0", "mtu", None, "9000", "1500", Cause.RELOAD), 0.0)
    refused, changed = log.since(0)
    assert refused["reason"] == "Invalid argument" and changed["reason"] is None
    assert views.format_event(refused).endswith(
        "ipmp0 mtu 9000 refused by m1: Invalid argument; stays 1500 cause=link")
    assert views.format_event(changed).endswith("ipmp0 mtu 1500 -> 9000 cause=reload")
