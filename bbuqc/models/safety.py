"""Refuse checkpoint folders that would run their own code when loaded.

transformers runs a checkpoint's ``modeling_*.py`` / ``configuration_*.py`` / processor code
when it is loaded with ``trust_remote_code=True``, and ms-swift loads every model folder that way
(it logs a warning and goes on). Every family bbuqc supports is native to transformers, so a
folder that carries Python files is refused before anything loads, unless the user says
``model.trust_remote_code=true``. Pure function, no torch import: config validation calls it.
"""

from __future__ import annotations

from pathlib import Path


def python_files(folder: str | Path) -> list[str]:
    """The ``*.py`` files at the folder's top level (where transformers looks for remote code), sorted."""
    path = Path(folder)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.suffix == ".py" and p.is_file())


def remote_code_problem(folder: str, field: str, trusted: bool) -> str | None:
    """One error line when ``folder`` (the value of config ``field``, e.g. ``model.path``) ships
    Python files and remote code is not ``trusted``; None when it is fine to load."""
    if trusted or not folder:
        return None
    found = python_files(folder)
    if not found:
        return None
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return (
        f"{field}={folder}: the folder carries Python code ({shown}) that loading would run; "
        "every supported model is native to transformers, so remove the files, or set "
        "model.trust_remote_code=true if you trust this code"
    )
