"""fanout's configuration: Icecast 2.4.4's ``icecast.xml``, parsed into frozen dataclasses.

``parse_config(text)`` returns a ``Config`` or raises ``ConfigError`` (path, value,
expected); reading the file is the caller's (``fanout.startup.load_config``). Warnings
are in ``Config.warnings``. ``default_config(...)`` is the built-in one.
``Config.resolve_mount(name)`` gives a mount's effective settings. Where things live:
``model.py`` and ``mounts.py`` the dataclasses, ``tables.py`` the tag tables,
``builders.py`` section rules, ``loader.py`` the XML, ``tagtable.py`` the engine,
``hosting.py`` the process, alias and YP sections, ``support.py`` which elements are
implemented.
"""

from .defaults import default_config
from .errors import ConfigError
from .hosting import Alias, ChangeOwner, Directory, Security
from .loader import parse_config
from .model import (
    Authentication, Config, HttpHeader, Limits, ListenSocket, Logging, MasterConfig,
    MountConfig, Paths, RelayConfig, ResolvedMount,
)
from .mounts import HtpasswdAuth, ListenerAuth, UrlAuth

__all__ = [
    "Authentication", "Config", "ConfigError", "HtpasswdAuth", "HttpHeader", "Limits",
    "ListenSocket", "ListenerAuth", "Logging", "MasterConfig", "MountConfig", "Paths",
    "RelayConfig", "ResolvedMount", "UrlAuth", "default_config", "parse_config",
    "Alias", "ChangeOwner", "Directory", "Security",
]
