"""Reward plug-ins: `reward.plugins=[my_rewards.py, my.module]` registers your rewards beside the built-ins.

A plug-in is a Python file or an importable module that registers rewards with the decorators the built-ins
use (``bbuqc.rewards.row_reward``, or ``reward`` with a prepare of its own): a namespaced id
(``verdict.my_check``), a declared range, declared parameters (``reward.params.<id>.<name>``), the row's
columns as keyword arguments, errors counted as ``rewards/<id>/errors``. Its ids are then named like any
other in ``reward.weights`` and ``reward.params``. It is loaded while the config is validated, before any
model loads, in every process that validates (each torchrun rank and sweep job); loading the same plug-in
again is a no-op. docs/rewards.md has a worked example.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from .base import REGISTRY

#: plug-in (as configured, a file resolved) -> the reward ids it registered
LOADED: dict[str, list[str]] = {}


class PluginError(ValueError):
    """A plug-in that cannot be used; the message is one line naming it."""


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or spec.startswith(".")


def _import(spec: str) -> None:
    if _is_file(spec):
        path = Path(spec).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"{spec}: no such file (a reward plug-in is a .py file or an importable module)")
        name = f"bbuqc_reward_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # what the file's own imports and pickling (Ray, torchrun) look up
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    else:
        try:
            found = importlib.util.find_spec(spec)
        except ModuleNotFoundError:  # a parent package that is not there
            found = None
        if found is None:
            raise PluginError(f"{spec}: no such module (a reward plug-in is a .py file or an importable module)")
        importlib.import_module(spec)


def load_plugin(spec: str) -> list[str]:
    """Import one plug-in; returns the ids it registered. Raises PluginError naming it when it does not import,
    registers no reward, or registers an id that is already taken (a built-in's or another plug-in's)."""
    key = str(Path(spec).expanduser().resolve()) if _is_file(spec) else spec
    if key in LOADED:
        return LOADED[key]
    before = set(REGISTRY)
    try:
        _import(spec)
    except PluginError:
        raise
    except ValueError as exc:
        for rid in set(REGISTRY) - before:  # nothing of a refused plug-in stays registered
            del REGISTRY[rid]
        if "registered twice" in str(exc):
            raise PluginError(f"{spec}: {exc.args[0].replace('registered twice', 'already registered')} "
                              "(a built-in's or another plug-in's id); choose another name") from None
        raise PluginError(f"{spec}: does not import: {type(exc).__name__}: {exc}") from None
    except BaseException as exc:
        for rid in set(REGISTRY) - before:
            del REGISTRY[rid]
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise PluginError(f"{spec}: does not import: {type(exc).__name__}: {exc}") from None
    added = [rid for rid in REGISTRY if rid not in before]
    if not added:
        raise PluginError(f"{spec}: registers no reward (decorate a scorer with bbuqc.rewards.row_reward)")
    bad = [rid for rid in added if "." not in rid or rid.split(".", 1)[0] not in ("summary", "verdict")]
    if bad:
        for rid in added:
            del REGISTRY[rid]
        raise PluginError(f"{spec}: reward id {bad[0]!r} needs a task namespace: summary.<name> or verdict.<name>")
    LOADED[key] = added
    return added


def load_plugins(specs: list[str]) -> list[str]:
    """Every plug-in's problem, one line each (empty: all loaded)."""
    problems = []
    for spec in specs:
        try:
            load_plugin(str(spec))
        except PluginError as exc:
            problems.append(f"reward.plugins: {exc}")
    return problems
