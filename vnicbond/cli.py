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

from vnicbond.views import format_event, format_status, format_view, table

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
    import signal

    for sig in (signal.SIGHUP, signal.SIGUSR2):  # until the daemon handles them
        signal.signal(sig, signal.SIG_IGN)
    config = _load(args.config)
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper()), stream=sys.stderr,
        format="%(asctime)s vnicbond[%(process)d] %(levelname)s %(message)s")
    from vnicbond.control import ControlError
    from vnicbond.runtime import upgrade
    from vnicbond.runtime.daemon import Daemon
    from vnicbond.system.isolation import IsolationError

    # Its debug output is per message. (After the import: importing pyroute2 resets it to 0.)
    logging.getLogger("pyroute2").setLevel(logging.WARNING)

    try:
        Daemon(config, user=args.user, handover=upgrade.take()).run()
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

    print(table(["TIME", "GROUP", "MEMBER", "TARGET", "RESULT"], []), flush=True)
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


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Ask the daemon to start the installed code in its place (as SIGUSR2 does) and wait
    until the new code answers."""
    import time

    from vnicbond.control import ControlError, request

    path = _socket_path(args)
    try:
        before = request(path, "upgrade", timeout=60.0)
    except ControlError as e:
        return _fail(e)
    pid = before["pid"]
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            status = request(path, "status", timeout=max(0.5, deadline - time.monotonic()))
        except ControlError:
            if _gone(pid):
                print(f"vnicbond: the daemon (pid {pid}) exited: the installed code did not "
                      "start (see its log); the interfaces stay, and the next start adopts "
                      "them", file=sys.stderr)
                return EXIT_FAILURE
            continue
        if status.get("pid") != pid:
            print(f"vnicbond: the daemon was restarted (pid {status.get('pid')}), not upgraded "
                  "in place: the installed code did not take over (see its log)",
                  file=sys.stderr)
            return EXIT_FAILURE
        if status.get("upgrades", 0) > before["upgrades"]:
            print(f"upgraded in place: pid {pid}, vnicbond {before['version']} -> "
                  f"{status.get('version')}")
            return EXIT_OK
    print(f"vnicbond: the installed code did not answer within {args.wait:g} s (see the "
          "daemon's log)", file=sys.stderr)
    return EXIT_FAILURE


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


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

    p = client("status", "show groups, members, addresses, targets, probes or guest MACs")
    views = ["groups", "members", "addresses", "targets", "probes", "macs"]
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

    p = client("upgrade", "start the installed code in the running daemon's place, keeping "
               "the interfaces, sockets and state (as SIGUSR2 does)")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the new code to answer (default 60)")
    p.set_defaults(func=cmd_upgrade)

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
