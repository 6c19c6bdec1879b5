"""vnicbond's developer tools as importable modules: the benchmark, the soak and the fuzzer.

Each runs as a command through a wrapper beside it (``tools/bench``, ``tools/soak``,
``tools/fuzz``: tools/setup, then ``.venv/bin/python -m tools.bench`` and so on, from the
repository) and can be imported (tests/netns/test_fuzz.py imports the fuzzer). They share the
namespace lab in :mod:`vnicbond.lab` (the bond, ping, iperf3, transfers, results); what lives
here is only what they share as programs: where the repository is and how a signal stops them.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
#: Where the benchmark and the soak record their results.
DOC = ROOT / "docs" / "benchmarks.md"


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def interrupt_on_signals() -> None:
    """Make SIGINT (even if started with it ignored) and SIGTERM raise KeyboardInterrupt, so
    a tool's clean-up stops what it started, by PID, and removes its lab."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
