"""When the daemon says it is ready (:mod:`vnicbond.core.readiness`), on a fake clock: once
every group's TAP has its carrier, or has waited one failure detection time without one."""

from __future__ import annotations

from vnicbond.core.readiness import Readiness

START = 100.0


def test_ready_at_once_with_every_carrier_on() -> None:
    r = Readiness({"ipmp0": 1000, "ipmp1": 5000}, START)
    assert r.ready({"ipmp0": True, "ipmp1": True}, START)
    assert r.deadline({"ipmp0": True, "ipmp1": True}) is None


def test_without_a_carrier_ready_after_one_failure_detection_time() -> None:
    r = Readiness({"ipmp0": 1000}, START)
    assert not r.ready({"ipmp0": False}, START + 0.999)
    assert r.deadline({"ipmp0": False}) == START + 1.0
    assert r.ready({"ipmp0": False}, START + 1.0)
    assert r.waited_for({"ipmp0": False}) == ["ipmp0"]


def test_a_carrier_that_comes_on_makes_it_ready_before_the_time() -> None:
    r = Readiness({"ipmp0": 10_000}, START)
    assert not r.ready({"ipmp0": False}, START + 0.5)
    assert r.ready({"ipmp0": True}, START + 0.5)
    assert r.waited_for({"ipmp0": True}) == []


def test_every_group_counts_with_its_own_time() -> None:
    r = Readiness({"ipmp0": 1000, "ipmp1": 3000}, START)
    carriers = {"ipmp0": False, "ipmp1": False}
    assert r.deadline(carriers) == START + 3.0
    assert not r.ready(carriers, START + 2.0)  # ipmp0's time is up, ipmp1's is not
    assert r.ready({"ipmp0": False, "ipmp1": True}, START + 1.0)
    assert r.deadline({"ipmp0": True, "ipmp1": False}) == START + 3.0
