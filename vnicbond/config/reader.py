"""A typed reader of YAML node trees whose every error names the file, line and key path.

Owns the YAML side of the configuration and nothing of vnicbond's settings:
:func:`read_text` (a file's bytes to UTF-8 text), :func:`compose` (text to a node tree that
keeps source lines, YAML errors as :class:`ConfigError`) and :class:`NodeReader` (typed
access to mapping, list and scalar nodes, refusing unknown keys with a suggestion, recording
the line of each key path). What the keys are and what their values mean is
:mod:`vnicbond.config.schema`'s business.

YAML dialect: plain (unquoted) scalars are resolved with YAML 1.2 core-schema rules
rather than PyYAML's YAML 1.1 rules. Booleans are only ``true``/``false`` (``yes``,
``no``, ``on`` and ``off`` are plain strings, so using them where a boolean is
expected is an error); integers are decimal only; there are no sexagesimal numbers
(an unquoted ``02:00:00:00:00:10`` is the string it looks like) and no timestamps.
Duplicate keys in a mapping are errors. Merge keys (``<<``) and application tags are
not supported. Nodes are never constructed into Python objects: the reader looks at
each node's resolved tag and raw text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from difflib import get_close_matches
from typing import TypeVar

import yaml
from yaml.composer import Composer
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from vnicbond.config.errors import ConfigError, short

T = TypeVar("T")
V = TypeVar("V")

_TAG = "tag:yaml.org,2002:"
STR = _TAG + "str"
INT = _TAG + "int"
FLOAT = _TAG + "float"
BOOL = _TAG + "bool"
NULL = _TAG + "null"
MAP = _TAG + "map"
SEQ = _TAG + "seq"


# --------------------------------------------------------------------------- text to nodes


def read_text(path: str) -> str:
    """The UTF-8 text of the file at ``path``; ConfigError if unreadable or not UTF-8."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(path, None, "", f"cannot read the configuration file: {reason}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(path, line, "", f"the file is not valid UTF-8 ({exc.reason})") from None


class _CoreResolver(BaseResolver):
    """Resolve plain scalars with YAML 1.2 core-schema rules (see the module docstring)."""


_CoreResolver.add_implicit_resolver(
    BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreResolver.add_implicit_resolver(INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_CoreResolver.add_implicit_resolver(
    FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)
_CoreResolver.add_implicit_resolver(
    NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


class _Composer(Reader, Scanner, Parser, Composer, _CoreResolver):
    """Turns YAML text into a node tree (no Python objects) that keeps source marks."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _CoreResolver.__init__(self)


def compose(text: str, path: str) -> Node | None:
    """Parse ``text`` into a node tree (None if it holds no document); YAML errors become
    ConfigError."""
    composer: _Composer | None = None
    try:
        composer = _Composer(text)  # the reader checks the characters right away
        return composer.get_single_node()
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        raise ConfigError(path, line, "", f"invalid character {shown}: {exc.reason}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            context = exc.context
            if exc.context_mark is not None and exc.context_mark.line + 1 != line:
                context += f" on line {exc.context_mark.line + 1}"
            joiner = ", " if exc.problem.startswith("but ") else ": "
            message = f"{context}{joiner}{exc.problem}"
        raise ConfigError(path, line, "", f"YAML syntax error: {message}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, "", f"YAML error: {exc}") from None
    finally:
        if composer is not None:
            composer.dispose()


# --------------------------------------------------------------------------- nodes


def line_of(node: Node) -> int:
    """The 1-based line a node starts on."""
    return int(node.start_mark.line) + 1


def describe(node: Node) -> str:
    """What a node is, for "expected X, got Y" messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag, value = node.tag, str(node.value)
    if tag == NULL:
        return "null (an empty value)"
    if tag == BOOL:
        return f"a boolean ({value})"
    if tag == INT:
        return f"an integer ({value})"
    if tag == FLOAT:
        return f"a number ({value})"
    if tag == STR:
        return f"a string ({short(value)})"
    return f"a value tagged {tag}"


def join_choices(choices: Sequence[str]) -> str:
    """Accepted words as a message lists them."""
    return ", ".join(choices)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


class NodeReader:
    """Typed access to the nodes of one document; every refusal is a located ConfigError.

    ``key`` arguments are the key path of the node being read (``groups[0].mtu``); the
    reader records the line of every mapping value and list item it hands out in
    :attr:`lines`, so later messages can point back at them (:meth:`where`).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        """The file being read, as messages show it."""
        self.lines: dict[str, int] = {}
        """1-based line of each key path handed out so far."""

    def error(self, node: Node, key: str, message: str) -> ConfigError:
        """The error to raise about ``node`` at key path ``key``."""
        return ConfigError(self.path, line_of(node), key, message)

    def where(self, key: str) -> str:
        """``key``, with its line when known, for "also at ..." messages."""
        line = self.lines.get(key)
        return key if line is None else f"{key} on line {line}"

    def mapping(
        self, node: Node, key: str, valid: Sequence[str], required: Sequence[str] = ()
    ) -> dict[str, Node]:
        """The value nodes of a mapping, by key; refuses unknown, duplicate and missing keys."""
        if not isinstance(node, MappingNode) or node.tag != MAP:
            raise self.error(node, key, f"expected a mapping, got {describe(node)}")
        values: dict[str, Node] = {}
        key_nodes: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != STR:
                raise self.error(
                    key_node, key, f"keys must be strings, got {describe(key_node)} as a key"
                )
            name = str(key_node.value)
            child = _join(key, name)
            if name in key_nodes:
                raise self.error(
                    key_node,
                    child,
                    f"duplicate key {name!r} (first given on line {line_of(key_nodes[name])})",
                )
            if name not in valid:
                close = get_close_matches(name, valid, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise self.error(
                    key_node,
                    child,
                    f"unknown key {name!r} ({hint}valid keys: {join_choices(valid)})",
                )
            key_nodes[name] = key_node
            values[name] = value_node
            self.lines[child] = line_of(value_node)
        for name in required:
            if name not in values:
                raise self.error(node, _join(key, name), "required key is missing")
        return values

    def sequence(self, node: Node, key: str, *, non_empty: str | None = None) -> list[Node]:
        """The item nodes of a list; ``non_empty`` is the error message for an empty one."""
        if not isinstance(node, SequenceNode) or node.tag != SEQ:
            raise self.error(node, key, f"expected a list, got {describe(node)}")
        if non_empty is not None and not node.value:
            raise self.error(node, key, non_empty)
        for index, item in enumerate(node.value):
            self.lines[f"{key}[{index}]"] = line_of(item)
        return list(node.value)

    def scalar(self, node: Node, key: str, tags: Sequence[str], expected: str) -> str:
        """The raw text of a scalar resolved to one of ``tags``; else "expected EXPECTED"."""
        if isinstance(node, ScalarNode) and node.tag in tags:
            return str(node.value)
        raise self.error(node, key, f"expected {expected}, got {describe(node)}")

    def string(self, node: Node, key: str) -> str:
        return self.scalar(node, key, (STR,), "a string")

    def choice(self, node: Node, key: str, choices: Sequence[str], what: str) -> str:
        """A string that is one of ``choices``; ``what`` names it in the message."""
        value = self.string(node, key)
        if value not in choices:
            raise self.error(
                node, key, f"unknown {what} {short(value)} (valid: {join_choices(choices)})"
            )
        return value

    def boolean(self, node: Node, key: str) -> bool:
        if isinstance(node, ScalarNode) and node.tag == BOOL:
            text = str(node.value).lower()
            if text in ("true", "false"):
                return text == "true"
        raise self.error(node, key, f"expected a boolean (true or false), got {describe(node)}")

    def int_value(self, node: Node, key: str) -> int:
        """A decimal integer, any size."""
        text = self.scalar(node, key, (INT,), "an integer")
        try:
            return int(text, 10)
        except ValueError:
            raise self.error(node, key, f"invalid integer {short(text)}") from None

    def integer(self, node: Node, key: str, low: int, high: int) -> int:
        """A decimal integer from ``low`` to ``high``."""
        value = self.int_value(node, key)
        if not low <= value <= high:
            raise self.error(node, key, f"must be between {low} and {high}, got {value}")
        return value

    def convert(self, node: Node, key: str, parse: Callable[[V], T], value: V) -> T:
        """``parse(value)``, the text of a ValueError it raises becoming the error's message."""
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(node, key, str(exc)) from None
