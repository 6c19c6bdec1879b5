"""The capability check: the daemon names exactly what it lacks, and the sets are read right."""

from __future__ import annotations

import pytest

from vnicbond.system import privilege

STATUS = """Name:\tpython3
Uid:\t65534\t65534\t65534\t65534
CapInh:\t{inh:016x}
CapPrm:\t{prm:016x}
CapEff:\t{eff:016x}
CapBnd:\t000001ffffffffff
CapAmb:\t{amb:016x}
"""
BOTH = (1 << 12) | (1 << 13)


def status(eff: int, prm: int | None = None, inh: int = 0, amb: int = 0) -> str:
    return STATUS.format(eff=eff, prm=eff if prm is None else prm, inh=inh, amb=amb)


def test_capability_sets_are_parsed_as_hex_masks() -> None:
    sets = privilege.capability_sets(status(BOTH, inh=1 << 13, amb=1 << 12))
    assert sets == {"CapInh": 1 << 13, "CapPrm": BOTH, "CapEff": BOTH,
                    "CapBnd": 0x1FFFFFFFFFF, "CapAmb": 1 << 12}


@pytest.mark.parametrize(("eff", "lacking"), [
    (0, ["CAP_NET_ADMIN", "CAP_NET_RAW"]),
    (1 << 12, ["CAP_NET_RAW"]),
    (1 << 13, ["CAP_NET_ADMIN"]),
    ((1 << 21) | (1 << 0), ["CAP_NET_ADMIN", "CAP_NET_RAW"]),  # SYS_ADMIN, CHOWN: not these
    (BOTH, []),
    (0x1FFFFFFFFFF, []),
])
def test_missing_names_exactly_the_absent_ones(eff: int, lacking: list[str]) -> None:
    assert privilege.missing(eff) == lacking


def test_check_refuses_with_one_line_naming_what_is_missing() -> None:
    with pytest.raises(privilege.PrivilegeError) as info:
        privilege.check(status(1 << 12))
    message = str(info.value)
    assert "\n" not in message
    assert "lacks CAP_NET_RAW" in message and "lacks CAP_NET_ADMIN" not in message
    assert "--user" in message and "AmbientCapabilities" in message


def test_check_passes_with_both() -> None:
    privilege.check(status(BOTH))  # does not raise


def test_unknown_user_is_named() -> None:
    with pytest.raises(privilege.PrivilegeError, match="--user no-such-user-x: no such user"):
        privilege.resolve_user("no-such-user-x")


def test_numeric_user_is_a_uid() -> None:
    assert privilege.resolve_user("0").pw_uid == 0
