"""The vnicbond configuration file: YAML in, frozen dataclasses out.

This package owns the configuration format. :func:`load_config` / :func:`parse_config`
turn a YAML document into an immutable :class:`Config` (with :class:`GroupConfig`,
:class:`MemberConfig`, :class:`Route`, :class:`Announce`, :class:`Probe` and
:class:`ControlConfig` inside it), validating every value on the way. Every problem is
reported as a :class:`ConfigError` whose text is a single line of the form
``FILE:LINE: key.path: what is wrong``. :func:`check_system` adds read-only checks of a
parsed configuration against the running system (member interfaces exist and their MTU
is large enough). Import everything from here; the modules are:

- :mod:`~vnicbond.config.settings`: the dataclasses, their defaults, the format's constants;
- :mod:`~vnicbond.config.values`: parsers of single values (durations, MACs, names,
  addresses, the listen address), raising ValueError with the user's message;
- :mod:`~vnicbond.config.errors`: :class:`ConfigError` and how messages quote values;
- :mod:`~vnicbond.config.reader`: YAML text to nodes and typed, located node access (the
  YAML dialect is described there), knowing nothing of vnicbond;
- :mod:`~vnicbond.config.schema`: vnicbond's keys and rules, :func:`parse_config`,
  :func:`load_config`;
- :mod:`~vnicbond.config.check`: :func:`check_system`.

It imports only the standard library and PyYAML (and :mod:`vnicbond.wire.mac`, which is
standard library only), so client commands can use it and still start fast.
"""

from vnicbond.config.check import check_system
from vnicbond.config.errors import ConfigError
from vnicbond.config.schema import load_config, parse_config
from vnicbond.config.settings import (
    DEFAULT_SOCKET,
    FUTURE_MODES,
    LOG_LEVELS,
    MIN_FAILURE_DETECTION_MS,
    MODES,
    PROBE_METHODS,
    Announce,
    Config,
    ControlConfig,
    GroupConfig,
    IPAddress,
    IPInterface,
    IPNetwork,
    MacLearning,
    MemberConfig,
    MetricsConfig,
    Probe,
    Route,
)
from vnicbond.config.values import default_mac, parse_duration_ms, parse_listen
from vnicbond.wire.mac import format_mac

__all__ = [
    "DEFAULT_SOCKET",
    "FUTURE_MODES",
    "LOG_LEVELS",
    "MIN_FAILURE_DETECTION_MS",
    "MODES",
    "PROBE_METHODS",
    "Announce",
    "Config",
    "ConfigError",
    "ControlConfig",
    "GroupConfig",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "MacLearning",
    "MemberConfig",
    "MetricsConfig",
    "Probe",
    "Route",
    "check_system",
    "default_mac",
    "format_mac",
    "load_config",
    "parse_config",
    "parse_duration_ms",
    "parse_listen",
]
