"""The ``vnicbond`` command: run the daemon, check a configuration, ask a daemon for status.

Client commands import only the standard library, yaml and :mod:`vnicbond.control`; the
daemon's heavy imports (scapy, pyroute2, uvloop) happen inside ``run`` and ``demo``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _load(path: str, system: bool = True) -> Any:
    from vnicbond.config import ConfigError, check_system, load_config

    try:
        config = load_config(path)
        if system:
            check_system(config)
    except ConfigError as e:
        print(f"vnicbond: {e}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    return config


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a configuration without changing anything."""
    config = _load(args.config)
    groups = ", ".join(f"{g.name} ({len(g.members)} members)" for g in config.groups)
    print(f"{args.config}: ok: {groups}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon in the foreground until SIGTERM or SIGINT."""
    config = _load(args.config)
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper()), stream=sys.stderr,
        format="%(asctime)s vnicbond[%(process)d] %(levelname)s %(message)s")
    from vnicbond.control import ControlError
    from vnicbond.daemon import Daemon
    from vnicbond.system.isolation import IsolationError

    try:
        Daemon(config).run()
    except (ControlError, IsolationError, RuntimeError, OSError) as e:
        print(f"vnicbond: {e}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _socket_path(args: argparse.Namespace) -> str:
    from vnicbond.control import DEFAULT_SOCKET

    if args.socket:
        return str(args.socket)
    if args.config:
        return str(_load(args.config, system=False).control.socket)
    return DEFAULT_SOCKET


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


def _human(n: int) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n}{unit}"
        n //= 1000
    return f"{n}P"


def format_status(status: dict[str, Any]) -> str:
    """The status document as aligned tables for a terminal."""
    groups, members, addresses = [], [], []
    for g in status["groups"]:
        groups.append([g["name"], g["mode"], g["state"], "on" if g["carrier"] else "off",
                       g.get("active") or "-", str(g.get("failovers", 0))])
        for m in g["members"]:
            flags = "standby" if m.get("standby") else ""
            members.append([m["name"], g["name"], m["state"], m["link"], m["probe"],
                            _human(m.get("tx_packets", 0)), _human(m.get("rx_packets", 0)),
                            _human(m.get("tx_bytes", 0)) + "B",
                            _human(m.get("rx_bytes", 0)) + "B", flags])
        for a in g["addresses"]:
            addresses.append([a["address"], g["name"], a["member"] or "-"])
    return "\n\n".join([
        _table(["GROUP", "MODE", "STATE", "CARRIER", "ACTIVE", "FAILOVERS"], groups),
        _table(["MEMBER", "GROUP", "STATE", "LINK", "PROBE", "TX", "RX", "TX_BYTES",
                "RX_BYTES", "FLAGS"], members),
        _table(["ADDRESS", "GROUP", "MEMBER"], addresses),
    ])


def cmd_status(args: argparse.Namespace) -> int:
    """Print the daemon's status."""
    from vnicbond.control import ControlError, request

    try:
        status = request(_socket_path(args), "status")
    except ControlError as e:
        print(f"vnicbond: {e}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Build a throwaway lab, run the bond on it, pull the active link, report."""
    from vnicbond.demo import main as demo_main

    return demo_main(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per verb."""
    from vnicbond import __version__

    parser = argparse.ArgumentParser(prog="vnicbond", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vnicbond {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the daemon in the foreground")
    p.add_argument("-c", "--config", required=True, help="YAML configuration file")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a configuration without changing anything")
    p.add_argument("-c", "--config", required=True, help="YAML configuration file")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("status", help="show groups, members and addresses")
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    p.add_argument("--socket", help="the daemon's control socket")
    p.add_argument("-c", "--config", help="take the control socket from this configuration")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("demo", help="run the bond on a throwaway namespace lab and pull a link")
    p.add_argument("-c", "--config", default=None,
                   help="demo configuration (default: configs/demo.yaml's built-in copy)")
    p.add_argument("--keep", action="store_true", help="keep the lab for inspection")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vnicbond`` command."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))
