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
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its debug output is per message
    from vnicbond.control import ControlError
    from vnicbond.runtime.daemon import Daemon
    from vnicbond.system.isolation import IsolationError

    try:
        Daemon(config, user=args.user).run()
    except (ControlError, IsolationError, RuntimeError, OSError) as e:
        print(f"vnicbond: {e}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _socket_path(args: argparse.Namespace) -> str:
    from vnicbond.config import DEFAULT_SOCKET

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


def format_targets(status: dict[str, Any]) -> str:
    """Per member: how it is probed (like ``ipmpstat -t``)."""
    rows = []
    for g in status["groups"]:
        for m in g["members"]:
            targets = [t for t in g.get("targets", []) if t["member"] == m["name"]]
            mode = "disabled" if m["probe"] == "disabled" else "probing"
            rows.append([m["name"], g["name"], mode, m.get("test_address") or "-",
                         " ".join(t["target"] for t in targets) or "-"])
    return _table(["MEMBER", "GROUP", "MODE", "TESTADDR", "TARGETS"], rows)


def _member_list(g: dict[str, Any]) -> str:
    """``ipmpstat -g`` style: active members bare, idle ones (in parentheses), unusable
    ones [in brackets]."""
    names = []
    for m in g["members"]:
        if m["state"] == "active":
            names.append(m["name"])
        elif m["state"] == "standby":
            names.append(f"({m['name']})")
        else:
            names.append(f"[{m['name']}]")
    return " ".join(names)


def format_groups(status: dict[str, Any]) -> str:
    """Per group: mode, state, failure detection time, members (like ``ipmpstat -g``)."""
    rows = [[g["name"], g["mode"], g["state"], f"{g.get('fdt_ms', 0) / 1000:g}s",
             _member_list(g)] for g in status["groups"]]
    return _table(["GROUP", "MODE", "STATE", "FDT", "MEMBERS"], rows)


def format_addresses(status: dict[str, Any]) -> str:
    """Per data address: up or down, inbound member, outbound members (``ipmpstat -a``)."""
    rows = []
    for g in status["groups"]:
        outbound = " ".join(m["name"] for m in g["members"] if m["state"] == "active") or "-"
        for a in g["addresses"]:
            rows.append([a["address"], "up" if a["member"] else "down", g["name"],
                         a["member"] or "-", outbound])
    return _table(["ADDRESS", "STATE", "GROUP", "INBOUND", "OUTBOUND"], rows)


def format_view(status: dict[str, Any], view: str) -> str:
    """One ``ipmpstat``-like view of the status document."""
    if view == "targets":
        return format_targets(status)
    if view == "groups":
        return format_groups(status)
    if view == "addresses":
        return format_addresses(status)
    return format_status(status).split("\n\n")[1]  # members


def _fail(e: Exception) -> int:
    print(f"vnicbond: {e}", file=sys.stderr)
    return EXIT_FAILURE


def cmd_status(args: argparse.Namespace) -> int:
    """Print the daemon's status, whole or one view."""
    from vnicbond.control import ControlError, request

    try:
        status = request(_socket_path(args), "status")
    except ControlError as e:
        return _fail(e)
    if args.json:
        print(json.dumps(status, indent=2))
    elif args.view == "probes":
        return _follow_probes(args, status)
    elif args.view:
        print(format_view(status, args.view))
    else:
        print(format_status(status))
    return EXIT_OK


def _follow_probes(args: argparse.Namespace, status: dict[str, Any]) -> int:
    """Print a line per answered or lost probe as they happen (like ``ipmpstat -p``)."""
    import time

    from vnicbond.control import ControlError, request

    def counts(st: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {(g["name"], t["member"], t["target"]): t for g in st["groups"]
                for t in g.get("targets", [])}

    print(_table(["TIME", "GROUP", "MEMBER", "TARGET", "RESULT"], []), flush=True)
    seen = counts(status)
    deadline = time.monotonic() + args.seconds if args.seconds else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(args.interval)
            now = counts(request(_socket_path(args), "status"))
            for key, t in now.items():
                old = seen.get(key, {"sent": 0, "lost": 0})
                lost = t["lost"] - old["lost"]
                answered = t["sent"] - old["sent"] - lost
                stamp = time.strftime("%H:%M:%S")
                for _ in range(max(lost, 0)):
                    print(f"{stamp}  {key[0]}  {key[1]}  {key[2]}  lost", flush=True)
                if answered > 0 and t["rtt_ms"] is not None:
                    print(f"{stamp}  {key[0]}  {key[1]}  {key[2]}  {t['rtt_ms']:.2f} ms"
                          + (f" (x{answered})" if answered > 1 else ""), flush=True)
            seen = now
    except ControlError as e:
        return _fail(e)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_admin(args: argparse.Namespace) -> int:
    """Take a member offline (its traffic moves first) or bring it back online."""
    from vnicbond.control import ControlError, request

    try:
        result = request(_socket_path(args), args.command, member=args.member)
    except ControlError as e:
        return _fail(e)
    verb = "is now" if result["changed"] else "was already"
    print(f"{result['member']} {verb} {result['state']}")
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    """Ask the daemon to re-read its configuration (as SIGHUP does)."""
    from vnicbond.control import ControlError, request

    try:
        result = request(_socket_path(args), "reload", timeout=30.0)
    except ControlError as e:
        return _fail(e)
    for group, changes in result.items():
        done = [f"{k.replace('_', ' ')}: {', '.join(v)}" for k, v in changes.items() if v]
        print(f"{group}: reloaded" + (f" ({'; '.join(done)})" if done else ""))
    return EXIT_OK


def format_event(e: dict[str, Any]) -> str:
    """One line per change: time, group, what changed, and why."""
    import time

    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(e["time"]))
    stamp += f".{int(e['time'] * 1000) % 1000:03d}"
    if e["kind"] == "member":
        what = f"member {e['member']} {e['old'] or '-'} -> {e['state']}"
    elif e["kind"] == "address":
        what = f"address {e['state']} {e['old'] or '-'} -> {e['member'] or '-'}"
    elif e["kind"] == "group":
        what = f"group {e['old'] or '-'} -> {e['state']}"
    else:
        what = f"{e['kind']} {e['state']}"
    cause = f" cause={e['cause']}" if e.get("cause") else ""
    return f"{stamp} {e['group']} {what}{cause}"


def cmd_events(args: argparse.Namespace) -> int:
    """Print the recorded changes; with --follow, keep printing new ones."""
    import time

    from vnicbond.control import ControlError, request

    since = 0
    try:
        while True:
            for e in request(_socket_path(args), "events", since=since):
                print(json.dumps(e) if args.json else format_event(e), flush=True)
                since = e["seq"]
            if not args.follow:
                return EXIT_OK
            time.sleep(0.2)
    except ControlError as e:
        return _fail(e)
    except KeyboardInterrupt:
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
    p.add_argument("--user", help="started as root: create the TAPs, then run as this user "
                   "with only CAP_NET_ADMIN and CAP_NET_RAW")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a configuration without changing anything")
    p.add_argument("-c", "--config", required=True, help="YAML configuration file")
    p.set_defaults(func=cmd_check)

    def client(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--socket", help="the daemon's control socket")
        p.add_argument("-c", "--config", help="take the control socket from this configuration")
        return p

    p = client("status", "show groups, members, addresses, targets or probes")
    views = ["groups", "members", "addresses", "targets", "probes"]
    p.add_argument("view", nargs="?", choices=views, help="one view (default: the first three)")
    p.add_argument("--json", action="store_true", help="print the status document as JSON")
    p.add_argument("--interval", type=float, default=0.5, help="probes: poll interval (s)")
    p.add_argument("--seconds", type=float, default=0.0,
                   help="probes: stop after this long (default: until Ctrl-C)")
    p.set_defaults(func=cmd_status)

    for verb, text in (("offline", "move a member's traffic away and stop using it"),
                       ("online", "put an offline member back through the repair path")):
        p = client(verb, text)
        p.add_argument("member", help="the member's interface name")
        p.set_defaults(func=cmd_admin)

    p = client("reload", "re-read the configuration and apply it without a restart")
    p.set_defaults(func=cmd_reload)

    p = client("events", "show what changed and why (member, address, group, carrier)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    p.set_defaults(func=cmd_events)

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
