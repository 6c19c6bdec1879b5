"""vnicbond.wire.mac: the text form of a MAC and the link-local address it gives."""

from __future__ import annotations

from ipaddress import IPv6Address

import pytest

from vnicbond.wire.mac import format_mac, link_local


def test_format_mac() -> None:
    assert format_mac(bytes.fromhex("02000000000a")) == "02:00:00:00:00:0a"


# Read with `ip -6 addr` from veths given these MACs (addr_gen_mode eui64, the default).
KERNEL = {
    "02:00:00:00:00:0a": "fe80::ff:fe00:a",
    "00:16:3e:12:34:56": "fe80::216:3eff:fe12:3456",
    "fe:ff:ff:ff:ff:ff": "fe80::fcff:ffff:feff:ffff",
    "52:54:00:ab:cd:ef": "fe80::5054:ff:feab:cdef",
}


@pytest.mark.parametrize(("mac", "address"), KERNEL.items())
def test_link_local_is_the_kernels(mac: str, address: str) -> None:
    assert link_local(bytes.fromhex(mac.replace(":", ""))) == IPv6Address(address)


def test_link_local_is_link_local() -> None:
    assert link_local(bytes(6)).is_link_local
    assert link_local(bytes(6)) == IPv6Address("fe80::200:ff:fe00:0")


@pytest.mark.parametrize("mac", [b"", bytes(5), bytes(7), "02:00:00:00:00:0a"])
def test_link_local_refuses_what_is_not_a_mac(mac: object) -> None:
    with pytest.raises(ValueError, match="a MAC is 6 bytes"):
        link_local(mac)  # type: ignore[arg-type]
