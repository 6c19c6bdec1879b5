"""The guests' MAC table (:class:`vnicbond.core.fdb.MacTable`), on a fake clock.

The rules from its module docstring, each checked so it can fail: a MAC heard is learned once
and refreshed to most recently heard; a learned MAC not heard from for ``aging`` seconds goes,
and :meth:`~MacTable.next_expiry` says when; at most ``limit`` learned MACs, a new one past the
limit pushing out (and counting) the least recently heard, so a flood of new MACs cannot push
out a MAC heard again before ``limit`` new ones arrived; registered MACs (the TAP's unicast
list) neither age nor count against the limit; a reload resizes the table; and
:meth:`~MacTable.changes` reports every MAC that arrived and every MAC that left exactly once,
whatever happened in between (checked by hand for the tricky orders and against a model for
random sequences).
"""

from __future__ import annotations

import random

from vnicbond.core.fdb import MacTable

AGING = 30.0


def mac(i: int) -> bytes:
    """A locally administered unicast MAC numbered ``i``."""
    return bytes([0x02, 0x42]) + i.to_bytes(4, "big")


A, B, C, D, E = (mac(i) for i in range(1, 6))
R1, R2 = mac(101), mac(102)


def nothing_reported(table: MacTable) -> bool:
    return table.changes() == ([], [])


# -- learning ------------------------------------------------------------------------------------
def test_a_mac_heard_is_learned_once_and_reported_once() -> None:
    t = MacTable(16, AGING)
    assert A not in t and len(t) == 0 and not t.pending
    assert t.heard(A, 0.0) is True
    assert t.heard(A, 1.0) is False  # already known: only refreshed
    assert A in t and len(t) == 1 and t.pending
    assert t.changes() == ([A], [])
    assert nothing_reported(t)
    assert t.heard(A, 2.0) is False
    assert not t.pending  # a refresh is no news: the datapath does not call out for it
    assert nothing_reported(t)


def test_macs_are_reported_in_the_order_they_came() -> None:
    t = MacTable(16, AGING)
    for i, m in enumerate([C, A, B]):
        t.heard(m, float(i))
    assert t.changes() == ([C, A, B], [])


def test_hearing_a_mac_again_makes_it_the_most_recently_heard() -> None:
    t = MacTable(3, AGING)
    t.heard(A, 0.0)
    t.heard(B, 1.0)
    t.heard(C, 2.0)
    t.heard(A, 3.0)
    assert list(t.learned) == [B, C, A]
    assert t.age(A, 10.0) == 7.0 and t.age(B, 10.0) == 9.0
    t.heard(D, 4.0)  # full: the least recently heard goes, not the oldest learned
    assert list(t.learned) == [C, A, D]
    assert B not in t and A in t


# -- aging ---------------------------------------------------------------------------------------
def test_a_mac_not_heard_from_for_the_aging_time_goes() -> None:
    t = MacTable(16, AGING)
    assert t.next_expiry() is None
    t.heard(A, 0.0)
    t.heard(B, 10.0)
    t.changes()
    assert t.next_expiry() == 30.0
    t.expire(29.9)
    assert A in t and nothing_reported(t)
    t.expire(30.0)  # at next_expiry() there is something to do
    assert A not in t and B in t
    assert t.changes() == ([], [A])
    assert t.next_expiry() == 40.0
    t.heard(B, 35.0)  # heard again in time: stays, and its clock starts again
    assert t.next_expiry() == 65.0
    t.expire(64.0)
    assert B in t and nothing_reported(t)
    t.expire(65.0)
    assert t.changes() == ([], [B])
    assert t.next_expiry() is None and len(t) == 0


def test_expiry_follows_the_least_recently_heard_not_the_first_learned() -> None:
    t = MacTable(16, AGING)
    t.heard(A, 0.0)
    t.heard(B, 5.0)
    t.heard(A, 20.0)
    assert t.next_expiry() == 35.0  # B's
    t.expire(40.0)
    assert B not in t and A in t
    assert t.next_expiry() == 50.0


def test_a_mac_that_ages_out_and_comes_back_is_reported_again() -> None:
    t = MacTable(16, AGING)
    t.heard(A, 0.0)
    assert t.changes() == ([A], [])
    t.expire(100.0)
    assert t.changes() == ([], [A])
    assert t.heard(A, 101.0) is True
    assert t.changes() == ([A], [])


# -- the limit -----------------------------------------------------------------------------------
def test_past_the_limit_the_least_recently_heard_is_evicted_and_counted() -> None:
    t = MacTable(4, AGING)
    for i, m in enumerate([A, B, C, D]):
        t.heard(m, float(i))
    t.changes()
    assert t.evictions == 0
    assert t.heard(E, 10.0) is True
    assert len(t.learned) == 4 and A not in t and E in t
    assert t.evictions == 1
    assert t.changes() == ([E], [A])


def test_a_flood_never_grows_the_table_past_its_limit() -> None:
    limit = 16
    t = MacTable(limit, AGING)
    for i in range(10 * limit):
        t.heard(mac(1000 + i), i / 1000)
        assert len(t.learned) <= limit
    assert t.evictions == 9 * limit
    added, removed = t.changes()
    # Only the MACs still there are reported, the ones that came and went in between not.
    assert added == [mac(1000 + i) for i in range(9 * limit, 10 * limit)] and removed == []


def test_a_flood_cannot_push_out_a_mac_heard_again_before_limit_new_macs() -> None:
    """A guest that speaks at least once every ``limit - 1`` new MACs stays however long the
    flood; one that stays silent while ``limit`` new MACs arrive is pushed out."""
    limit = 16
    t = MacTable(limit, AGING)
    now = 0.0
    t.heard(A, now)
    flood = (mac(5000 + i) for i in range(100_000))
    for _ in range(20):
        for _ in range(limit - 1):
            now += 0.001
            t.heard(next(flood), now)
        assert A in t
        now += 0.001
        t.heard(A, now)
    added, removed = t.changes()
    assert A in added and A not in removed
    assert t.evictions > 10 * limit
    for _ in range(limit):  # silent for ``limit`` new MACs: the least recently heard now
        now += 0.001
        t.heard(next(flood), now)
    assert A not in t
    assert A in t.changes()[1]


# -- registered MACs -----------------------------------------------------------------------------
def test_registered_macs_are_reported_and_unregistered_ones_too() -> None:
    t = MacTable(16, AGING)
    t.register({R1, R2})
    assert R1 in t and R2 in t and len(t) == 2
    added, removed = t.changes()
    assert sorted(added) == [R1, R2] and removed == []
    t.register({R1, R2})
    assert nothing_reported(t)
    t.register({R2})
    assert R1 not in t
    assert t.changes() == ([], [R1])
    t.register(set())
    assert t.changes() == ([], [R2]) and len(t) == 0


def test_registered_macs_do_not_age() -> None:
    t = MacTable(16, AGING)
    t.register({R1})
    t.changes()
    assert t.next_expiry() is None
    t.expire(1e9)
    assert R1 in t and nothing_reported(t)
    assert t.age(R1, 1e9) is None


def test_registered_macs_do_not_count_against_the_limit() -> None:
    limit = 16
    t = MacTable(limit, AGING)
    registered = {mac(200 + i) for i in range(2 * limit)}
    t.register(registered)
    for i in range(limit):
        t.heard(mac(300 + i), float(i))
    assert t.evictions == 0
    assert len(t) == 3 * limit


def test_a_registered_mac_that_speaks_takes_no_learned_place() -> None:
    """A macvlan's MAC is registered and sends frames too: it neither uses up one of the
    ``limit`` places nor is ever counted as evicted, and no learned MAC is pushed out for it."""
    limit = 16
    t = MacTable(limit, AGING)
    t.register({R1})
    now = 0.0
    t.heard(R1, now)
    for i in range(limit):
        now += 1.0
        t.heard(mac(300 + i), now)
        t.heard(R1, now)  # the macvlan keeps talking
    assert t.evictions == 0
    assert all(mac(300 + i) in t for i in range(limit))
    t.expire(now + 1e6)
    assert R1 in t


def test_a_learned_mac_that_gets_registered_frees_its_learned_place() -> None:
    limit = 16
    t = MacTable(limit, AGING)
    for i in range(limit):
        t.heard(mac(300 + i), float(i))
    t.register({mac(300)})  # the least recently heard, now on the TAP's list
    t.heard(mac(999), 100.0)
    assert t.evictions == 0
    assert len(t) == limit + 1 and mac(300) in t


def test_a_learned_mac_that_gets_registered_is_not_reported_again() -> None:
    t = MacTable(16, AGING)
    t.heard(A, 0.0)
    assert t.changes() == ([A], [])
    t.register({A})
    assert A in t and nothing_reported(t)
    t.expire(1e6)  # registered now: it stays
    assert A in t and nothing_reported(t)
    t.register(set())
    assert A not in t
    assert t.changes() == ([], [A])


def test_a_registered_mac_that_is_also_learned_stays_while_heard() -> None:
    """Unregistered while it still talks: still there, or gone and back, but never reported
    twice in a row the same way."""
    t = MacTable(16, AGING)
    t.register({A})
    assert t.changes() == ([A], [])
    t.heard(A, 0.0)
    t.register(set())
    t.heard(A, 1.0)  # its next frame
    assert A in t
    assert t.changes() == ([], [])
    t.expire(1e6)
    assert A not in t
    assert t.changes() == ([], [A])


def test_a_flood_never_removes_a_registered_mac() -> None:
    limit = 16
    t = MacTable(limit, AGING)
    t.register({R1})
    t.heard(R1, 0.0)
    assert t.changes() == ([R1], [])
    for i in range(4 * limit):
        t.heard(mac(400 + i), 1.0 + i)
    added, removed = t.changes()
    assert R1 in t and R1 not in removed and R1 not in added


# -- reload --------------------------------------------------------------------------------------
def test_a_smaller_limit_evicts_the_least_recently_heard_and_counts_them() -> None:
    t = MacTable(8, AGING)
    for i, m in enumerate([A, B, C, D, E]):
        t.heard(m, float(i))
    t.heard(A, 10.0)
    t.register({R1})
    t.changes()
    t.resize(3, AGING)
    assert list(t.learned) == [D, E, A]
    assert t.evictions == 2 and R1 in t
    assert t.changes() == ([], [B, C])
    t.heard(mac(9), 11.0)  # the new limit holds
    assert len(t.learned) == 3 and D not in t and t.evictions == 3


def test_a_larger_limit_evicts_nothing_and_a_new_aging_time_applies_at_once() -> None:
    t = MacTable(4, AGING)
    t.heard(A, 0.0)
    t.heard(B, 1.0)
    t.changes()
    t.resize(16, 300.0)
    assert t.evictions == 0 and nothing_reported(t)
    assert t.next_expiry() == 300.0
    t.expire(100.0)
    assert A in t and B in t
    for i in range(10):
        t.heard(mac(600 + i), 2.0 + i)
    assert t.evictions == 0 and len(t.learned) == 12
    t.resize(16, 10.0)
    t.expire(11.5)
    assert A not in t and B not in t
    assert t.changes()[1] == [A, B]


# -- changes() reports each arrival and each departure exactly once ------------------------------
def test_a_mac_that_comes_and_goes_between_two_reports_is_not_reported() -> None:
    t = MacTable(2, AGING)
    t.heard(A, 0.0)
    t.heard(B, 1.0)
    t.heard(C, 2.0)  # A evicted before anyone was told it came
    t.heard(D, 3.0)  # B too
    assert t.changes() == ([C, D], [])
    t.register({R1})
    t.register(set())
    assert nothing_reported(t)


def test_a_mac_that_goes_and_comes_back_between_two_reports_is_not_reported() -> None:
    t = MacTable(2, AGING)
    t.heard(A, 0.0)
    t.heard(B, 1.0)
    t.changes()
    t.heard(C, 2.0)  # evicts A
    t.heard(A, 3.0)  # A back, evicts B
    assert t.changes() == ([C], [B])
    t.expire(100.0)
    t.heard(C, 101.0)
    assert t.changes() == ([], [A])


def test_an_evicted_mac_that_is_registered_is_not_reported_gone() -> None:
    t = MacTable(2, AGING)
    t.heard(A, 0.0)
    t.changes()
    t.register({A})
    t.heard(B, 1.0)
    t.heard(C, 2.0)
    t.heard(D, 3.0)  # A, if still among the learned, is pushed out: it stays registered
    assert t.changes() == ([C, D], [])
    assert A in t
    t.register(set())
    assert t.changes()[1] == [A]


class Model:
    """What has been reported present, from the reports alone."""

    def __init__(self) -> None:
        self.present: set[bytes] = set()

    def apply(self, added: list[bytes], removed: list[bytes]) -> None:
        assert len(set(added)) == len(added) and len(set(removed)) == len(removed)
        assert not set(added) & self.present, "reported arriving twice"
        assert set(removed) <= self.present, "reported leaving without having arrived"
        self.present = (self.present - set(removed)) | set(added)


def test_random_sequences_report_every_arrival_and_departure_exactly_once() -> None:
    """Learning, refreshing, aging, evictions, registering, unregistering and reloads in random
    order: after each report, what the reports say is present is exactly the table."""
    rng = random.Random(12)
    for _ in range(40):
        limit = rng.choice([16, 17, 32])
        t = MacTable(limit, AGING)
        model = Model()
        now = 0.0
        macs = [mac(i) for i in range(3 * limit)]
        for _ in range(600):
            now += rng.random()
            op = rng.random()
            if op < 0.7:
                t.heard(rng.choice(macs), now)
            elif op < 0.8:
                t.expire(now)
            elif op < 0.9:
                t.register(set(rng.sample(macs, rng.randrange(0, 6))))
            elif op < 0.93:
                t.resize(rng.choice([16, 17, 32]), rng.choice([5.0, AGING]))
            else:
                model.apply(*t.changes())
                assert model.present == set(t.learned) | t.registered
                assert len(t.learned) <= t.limit
                assert len(t) == len(model.present)
        model.apply(*t.changes())
        assert model.present == set(t.learned) | t.registered
