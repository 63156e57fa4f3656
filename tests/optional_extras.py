"""Which optional extra a config option needs, so that its tests skip without it, saying which.

``make test EXTRAS=test`` (the README's path for a machine without a C++ compiler) installs none
of the optional extras of pyproject.toml; a test that needs one must then be skipped with the
reason, never fail. ``pytest.importorskip`` covers the tests that import a package themselves;
this module covers the config options that need a Hydra plugin: an option whose defaults say
``override /hydra/launcher: joblib`` does not even compose without the plugin ("Could not find
'hydra/launcher/joblib'", https://hydra.cc/docs/advanced/plugins/overview/ : plugins are found
in the installed ``hydra_plugins`` namespace package).

The option files are read, not a list kept by hand, so a new option that selects a plugin is
covered (or fails ``tests/test_config.py::test_every_hydra_plugin_is_known_and_declared``).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

# Hydra plugin option (`override /hydra/<kind>: <name>`) -> (its module, its distribution).
HYDRA_PLUGINS = {
    ("launcher", "joblib"): ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    ("launcher", "submitit_local"): ("hydra_plugins.hydra_submitit_launcher",
                                     "hydra-submitit-launcher"),
    ("launcher", "submitit_slurm"): ("hydra_plugins.hydra_submitit_launcher",
                                     "hydra-submitit-launcher"),
    ("sweeper", "optuna"): ("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
}

# A defaults-list entry `- override /group: option` or `- /group: option` (Hydra's defaults
# list, https://hydra.cc/docs/advanced/defaults_list/).
_DEFAULT = re.compile(r"^\s*-\s*(?:override\s+)?/?([\w/]+)\s*:\s*([\w.-]+)\s*$", re.M)


def installed(module: str) -> bool:
    """``module`` can be imported (a missing parent package, e.g. no ``hydra_plugins`` at all,
    counts as not installed: ``find_spec`` raises there instead of returning None)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def extras() -> dict[str, list[str]]:
    """pyproject.toml's optional dependencies: ``{extra: [distribution names]}`` (read as text:
    the package supports Python 3.10, which has no tomllib)."""
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    out = {}
    for name, body in re.findall(r"^([\w-]+)\s*=\s*\[(.*?)\]", section, re.M | re.S):
        reqs = re.findall(r'"([^"]+)"', body)
        out[name] = [re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower() for r in reqs]
    return out


def extra_of(distribution: str) -> str | None:
    """The extra of pyproject.toml that installs ``distribution`` (None: none does)."""
    for name, dists in extras().items():
        if distribution.lower() in dists:
            return name
    return None


def hydra_plugins_of(group: str, option: str, _seen: frozenset = frozenset()) -> list[tuple]:
    """The Hydra plugins (``(kind, name)`` keys of HYDRA_PLUGINS) that choosing ``group=option``
    selects: in its own defaults list, or in that of an option it overrides in turn."""
    if group.startswith("hydra/"):
        kind = group.split("/", 1)[1]
        return [(kind, option)] if kind in ("launcher", "sweeper") else []
    path = CONF_DIR / group / f"{option}.yaml"
    if (group, option) in _seen or not path.is_file():
        return []
    found = []
    for sub_group, sub_option in _DEFAULT.findall(path.read_text()):
        found += hydra_plugins_of(sub_group, sub_option, _seen | {(group, option)})
    return found


def skip_unless_installed(group: str, option: str) -> None:
    """Skip the calling test, naming the extra to install, if ``group=option`` needs a Hydra
    plugin that is not installed."""
    for key in hydra_plugins_of(group, option):
        module, dist = HYDRA_PLUGINS[key]
        if not installed(module):
            extra = extra_of(dist)
            pytest.skip(f'{group}={option} needs {dist}, not installed: pip install '
                        f'"fcnlab[{extra}]" (or `make` with the default EXTRAS)')


def skip_unless_overrides_installed(words: list[str]) -> None:
    """:func:`skip_unless_installed` for each ``group=option`` (or sweep ``group=a,b``) of a
    command line's words."""
    for word in words:
        key, sep, value = word.lstrip("+~").partition("=")
        if not sep or "." in key:
            continue
        for option in value.split(","):
            skip_unless_installed(key, option)
