"""Writing results down: tables for the terminal and Markdown, the machine and command line
they were measured with, and a marked section of a document (docs/benchmarks.md) rewritten.

It formats and writes what it is given; it measures and judges nothing.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Aligned columns for the terminal, ``|`` between them, a rule under the headers."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in [headers, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table in Markdown."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def machine() -> dict[str, str]:
    """Date (UTC), kernel release, CPU model and core count."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "kernel": platform.release(), "cpu": model,
            "cores": str(os.cpu_count() or "unknown")}


def command_line(root: Path) -> str:
    """This process's command line, interpreter included, with paths inside ``root`` made
    relative to it."""
    return shlex.join(arg.replace(f"{root}/", "") for arg in sys.orig_argv)


def record(path: Path, begin: str, end: str, body: str, new: str = "") -> None:
    """Replace the text between the markers ``begin`` and ``end`` of ``path`` with ``body``;
    add the markers and ``body`` at the end if they are absent (to ``new`` if the file does
    not exist). The file is replaced whole, by a rename."""
    block = f"{begin}\n{body}\n{end}"
    text = path.read_text() if path.exists() else new
    head, found, rest = text.partition(begin)
    if found and end in rest:
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
