"""The host's own stack stays off the members: one answer per question, nothing twice."""

from __future__ import annotations

import json
import sys

from vnicbond.config import default_mac, format_mac
from vnicbond.lab import DATA_V4, DATA_V6, ping_result, ping_stream, wait_ping


def test_one_arp_request_gets_exactly_one_reply(lab, make_bond):
    make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    out = lab.ns(lab.peer, sys.executable, "-m", "tests.netns.arp_probe", "p0", DATA_V4, "1.0",
                 timeout=30).stdout
    result = json.loads(out.strip().splitlines()[-1])
    # Only the TAP answers, with the group's MAC; neither member's own stack does.
    assert result == {"replies": 1, "macs": [format_mac(default_mac("ipmp0"))]}


def test_every_ping_gets_exactly_one_reply(lab, make_bond):
    make_bond(lab)
    wait_ping(lab, lab.peer, DATA_V4)
    wait_ping(lab, lab.peer, DATA_V6)
    for address in (DATA_V4, DATA_V6):
        sent, received, out = ping_result(ping_stream(lab, lab.peer, address, 0.01, 100))
        assert sent == received == 100, out
        assert "DUP!" not in out


def test_members_carry_no_ipv6_and_hide_from_the_host_stack(lab, make_bond):
    make_bond(lab)
    for i in range(lab.members):
        m = lab.member(i)
        sysctl = lab.ns(lab.host, "sysctl", "-n", f"net.ipv6.conf.{m}.disable_ipv6").stdout
        assert sysctl.strip() == "1"
        addrs = lab.ns(lab.host, "ip", "-o", "addr", "show", "dev", m).stdout
        assert addrs.strip() == ""
    table = lab.ns(lab.host, "nft", "list", "table", "netdev", "vnicbond_ipmp0").stdout
    assert table.count("policy drop") == lab.members
