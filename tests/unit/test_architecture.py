"""The layering the code promises (docs/architecture.md), checked on the source.

The decision core (``vnicbond/core``) is pure: no sockets, no event loop, no clock, no logging,
no kernel, and none of the runtime that carries its effects out. The wire formats depend on
nothing of the daemon. Only ``vnicbond/system`` and the runtime and datapath above it touch
the kernel.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "vnicbond"
#: Modules the pure core must not import: I/O, clocks, and the layers above it.
IMPURE = ("asyncio", "socket", "time", "logging", "subprocess", "select", "fcntl", "ctypes",
          "uvloop", "pyroute2", "vnicbond.system", "vnicbond.runtime", "vnicbond.datapath",
          "vnicbond.control", "vnicbond.metrics")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def offending(path: Path, banned: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imports(path)
                  if any(m == b or m.startswith(b + ".") for b in banned))


@pytest.mark.parametrize("path", sorted((PACKAGE / "core").glob("*.py")), ids=lambda p: p.name)
def test_the_core_is_pure(path: Path) -> None:
    assert offending(path, IMPURE) == []


@pytest.mark.parametrize("path", sorted((PACKAGE / "wire").glob("*.py")), ids=lambda p: p.name)
def test_wire_formats_depend_on_nothing_of_the_daemon(path: Path) -> None:
    assert offending(path, (*IMPURE, "vnicbond.core", "vnicbond.config")) == []


def test_every_directory_is_a_regular_package() -> None:
    """setuptools ships only directories with an __init__.py: a namespace package would work
    from the checkout and vanish from an installed copy."""
    missing = [str(d.relative_to(PACKAGE)) for d in [PACKAGE, *PACKAGE.rglob("*")]
               if d.is_dir() and d.name != "__pycache__" and not (d / "__init__.py").exists()]
    assert missing == []


def test_the_checker_sees_imports() -> None:
    """The check itself can fail: the runtime does import what the core may not."""
    assert offending(PACKAGE / "runtime" / "group.py", IMPURE)
