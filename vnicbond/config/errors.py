"""The configuration's error type and how its messages quote what the user wrote.

Owns :class:`ConfigError` (one line, ``FILE:LINE: key.path: what is wrong``) and
:func:`short`, the quoting every message uses for a user's value. It knows nothing of YAML
or of vnicbond's settings; every other module of the package raises through it.
"""

from __future__ import annotations

import re


class ConfigError(Exception):
    """A problem with the configuration, located in the file it came from.

    ``str(error)`` is one line: ``FILE:LINE: key.path: what is wrong``. The ``LINE``
    part is left out when the line is unknown (``line`` is None, e.g. an unreadable
    file), and the ``key.path`` part when the problem is not about one key (``key``
    is empty, e.g. a YAML syntax error).
    """

    path: str
    """The configuration file's path as given (``"<string>"`` for in-memory text)."""
    line: int | None
    """1-based line of the offending YAML node, or None when there is none."""
    key: str
    """Path of the offending key, e.g. ``groups[0].members[1].test_address``; may be empty."""
    message: str
    """What is wrong, for a human."""

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        super().__init__(path, line, key, message)
        self.path = path
        self.line = line
        self.key = key
        self.message = message

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        parts = [where, self.key, self.message] if self.key else [where, self.message]
        return _one_line(": ".join(parts))


_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _one_line(text: str) -> str:
    """Escape every character that ``str.splitlines`` would break a line on."""
    return _LINE_BREAKS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def short(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters with ``...``."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
