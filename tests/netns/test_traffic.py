"""Traffic through the bond: ping and TCP in both directions, IPv4 and IPv6."""

from __future__ import annotations

from vnicbond.lab import DATA_V4, DATA_V6, PEER_V4, PEER_V6, Lab, wait_ping, xfer

MIB = 1024 * 1024


def transfer(lab: Lab, server_ns: str, client_ns: str, address: str, nbytes: int) -> None:
    """Send ``nbytes`` over TCP from ``client_ns`` to ``address`` and check every byte."""
    t = xfer.start(lab, server_ns, client_ns, address, 5301, nbytes)
    try:
        received, sent = t.ends(timeout=60)
    finally:
        t.stop()
    assert sent.get("bytes") == nbytes, sent
    assert received == {"bytes": sent["bytes"], "sha256": sent["sha256"]}


def test_ping_both_families_both_directions(lab, make_bond):
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    wait_ping(lab, lab.peer, DATA_V6)
    assert lab.ping_ok(lab.host, PEER_V4)
    assert lab.ping_ok(lab.host, PEER_V6)
    st = bond.status()
    assert st["state"] == "ok" and st["carrier"] is True
    active = next(m for m in st["members"] if m["state"] == "active")
    assert active["name"] == "m0"
    assert active["tx_packets"] > 0 and active["rx_packets"] > 0
    standby = next(m for m in st["members"] if m["name"] == "m1")
    assert standby["state"] == "standby"
    assert standby["tx_packets"] == 0 and standby["rx_packets"] == 0


def test_tcp_out_of_and_into_the_host_ipv4(lab, make_bond):
    bond = make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    transfer(lab, lab.peer, lab.host, PEER_V4, 64 * MIB)  # out of the host
    transfer(lab, lab.host, lab.peer, DATA_V4, 64 * MIB)  # into it
    m0 = bond.member("m0")
    assert m0["tx_bytes"] >= 64 * MIB and m0["rx_bytes"] >= 64 * MIB
    # Counters count wire packets (a TSO super-frame counts as its segments).
    assert m0["tx_packets"] >= 64 * MIB // 1500


def test_tap_offers_checksum_and_tso_offload(lab, make_bond):
    make_bond(lab)
    features = lab.ns(lab.host, "ethtool", "-k", "ipmp0").stdout
    for feature in ("tx-checksum-ip-generic: on", "tx-tcp-segmentation: on",
                    "tx-tcp6-segmentation: on", "tx-tcp-ecn-segmentation: on"):
        assert feature in features


def test_tcp_out_of_and_into_the_host_ipv6(lab, make_bond):
    make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V6)
    transfer(lab, lab.peer, lab.host, PEER_V6, 32 * MIB)
    transfer(lab, lab.host, lab.peer, DATA_V6, 32 * MIB)
