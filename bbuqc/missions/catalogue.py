"""Mission catalogue: the missions are YAML files of the Hydra ``mission`` group, read from there.

A mission is ``<folder>/mission/<id>.yaml`` with six fields (docs/data.md, "Missions")::

    id, name, domain, categories, focus, decision

The built-in seven are the package's ``conf/mission/*.yaml`` (``MISSIONS``). A user adds one from their own
config folder (``hydra.searchpath=[file:///my/conf]`` or ``--config-dir /my/conf``): when a command validates
its config, ``use_search_path`` reads the ``mission/`` folder of every entry of Hydra's search path, so
``all_missions()``, ``get_mission``, ``mission_named`` and ``resolve_mission`` (prompts, rows, Stage-B's
record check, the prompts digest) see those too. Hydra composes the chosen one (``mission=<id>``) from the
same files; ConfigStore registers none. The synthetic world's pass/fail rules are code keyed by id
(``rules.py``); a mission without rules cannot use ``data.source=synthetic`` (``config_problems``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bbuqc.errors import InputError
from bbuqc.runtime.paths import CONF_DIR

GROUP = "mission"  # the Hydra config group, and the folder its files are in
FIELDS = ("id", "name", "domain", "categories", "focus", "decision")
BUILT_IN_DIR = Path(CONF_DIR) / GROUP

# The built-in missions in the order the synthetic world numbers its groups and the tiny tokenizer reads its
# corpus (bbuqc/data/synth/world.py, bbuqc/models/tokenizer.py): group ids and merges depend on it, so it is
# the order of the catalogue when it was code. A file is the mission; this only orders them.
_BUILT_IN_ORDER = ("bbu_install", "bbu_ground", "bbu_cable", "bbu_wind", "rru_install", "rru_position", "rru_cable")


@dataclass(frozen=True)
class Mission:
    id: str  # mission=<id>: the file's name
    name: str  # the Chinese mission name, also the Stage-A folder name and the records' `mission`
    domain: str  # BBU or RRU: decides the summary header and taxonomy
    focus: tuple[str, ...]  # 检查要点, in the order reviewers read them (both prompts quote them)
    categories: tuple[str, ...]  # Stage-A prompt: the categories to look for first (【本任务重点关注】)
    decision: str  # Stage-B prompt: the decision rule (判定规则)


class MissionError(InputError):
    """A mission file that cannot be used, or two that clash; one line naming the file(s)."""


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


Taxonomy = Mapping[str, Iterable[str]]  # domain -> its categories (bbuqc.prompts.summary.TAXONOMY)


def mission_of(data: Any, where: str, stem: str | None = None, taxonomy: Taxonomy | None = None) -> Mission:
    """A Mission from a mission file's content; ``MissionError`` naming ``where`` and the field when it
    is not one. ``stem``: the file's name, which must be its id (``mission=<id>`` selects the file).
    ``taxonomy``: the domains and their categories, which ``domain`` and ``categories`` must be of (the
    summary format names no others); passed in, since the prompts that hold it import this module (the
    built-in files, read at import, are held to it by tests/missions)."""
    fields = ", ".join(FIELDS)
    if not isinstance(data, dict):
        raise MissionError(f"{where}: expected a mapping with the fields {fields}")
    for key in FIELDS:
        if key not in data or data[key] is None or data[key] == "???":
            raise MissionError(f"{where}: missing field '{key}' (a mission has {fields})")
    unknown = [k for k in data if k not in FIELDS]
    if unknown:
        raise MissionError(f"{where}: unknown field '{unknown[0]}' (a mission has {fields})")
    for key in ("id", "name", "decision"):
        if not _text(data[key]):
            raise MissionError(f"{where}: {key}: expected non-empty text, got {data[key]!r}")
    if stem is not None and data["id"] != stem:
        raise MissionError(f"{where}: id '{data['id']}' must be the file's name '{stem}' (mission=<id> selects "
                           "the file)")
    if taxonomy is not None and data["domain"] not in taxonomy:
        raise MissionError(f"{where}: domain '{data['domain']}': expected one of {', '.join(taxonomy)}")
    for key in ("categories", "focus"):
        value = data[key]
        if not isinstance(value, list) or not value or not all(_text(v) for v in value):
            raise MissionError(f"{where}: {key}: expected a non-empty list of texts, got {value!r}")
    if taxonomy is not None:
        known = list(taxonomy[data["domain"]])
        bad = [c for c in data["categories"] if c not in known]
        if bad:
            raise MissionError(f"{where}: categories: '{bad[0]}' is not a {data['domain']} category; expected "
                               f"some of {', '.join(known)}")
    return Mission(data["id"], data["name"], str(data["domain"]), tuple(data["focus"]), tuple(data["categories"]),
                   data["decision"])


def read_mission(path: Path, taxonomy: Taxonomy | None = None) -> Mission:
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise MissionError(f"{path}: cannot be read as YAML ({str(exc).splitlines()[0]})") from None
    return mission_of(data, str(path), path.stem, taxonomy)


def _read_folders(folders: Iterable[Path], taken: Mapping[str, tuple[Mission, str]],
                  taxonomy: Taxonomy) -> dict[str, Mission]:
    """The missions of ``<folder>/*.yaml`` for each folder, none clashing with ``taken`` (id -> (mission,
    where)) or with each other by id or by name (records name their mission by name)."""
    seen = dict(taken)
    found: dict[str, Mission] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            m = read_mission(path, taxonomy)
            for other, where in seen.values():
                if other.id == m.id:
                    raise MissionError(f"mission '{m.id}' is defined twice: {where} and {path} (one id, one file)")
                if other.name == m.name:
                    raise MissionError(f"mission name '{m.name}' is used twice: {where} ({other.id}) and {path} "
                                       f"({m.id}); Stage-A records name their mission by name")
            seen[m.id] = (m, str(path))
            found[m.id] = m
    return found


def _built_in() -> dict[str, Mission]:
    found = {p.stem: read_mission(p) for p in BUILT_IN_DIR.glob("*.yaml")}
    if set(found) != set(_BUILT_IN_ORDER):  # a package that lost or gained a file without its order
        raise MissionError(f"{BUILT_IN_DIR}: expected the built-in missions {', '.join(_BUILT_IN_ORDER)}, found "
                           f"{', '.join(sorted(found))}")
    return {mid: found[mid] for mid in _BUILT_IN_ORDER}


#: The built-in missions (the package's conf/mission/), in their order. What the synthetic world and the tiny
#: tokenizer are built from; every other use wants ``all_missions()``.
MISSIONS: dict[str, Mission] = _built_in()

_user: dict[str, Mission] = {}  # the running command's own missions (use_search_path), after the built-ins


def all_missions() -> dict[str, Mission]:
    """Every mission: the built-in ones, then the running command's own (its search path's, by file name)."""
    return {**MISSIONS, **_user}


def _known() -> str:
    return ", ".join(all_missions())


def get_mission(mission_id: str) -> Mission:
    try:
        return all_missions()[mission_id]
    except KeyError:
        raise KeyError(f"unknown mission {mission_id!r}; known: {_known()}") from None


def mission_named(name: str) -> Mission | None:
    """The mission whose Chinese name is ``name`` (as Stage-A records carry it), or None."""
    return next((m for m in all_missions().values() if m.name == name), None)


def resolve_mission(mission: Mission | str | Any) -> Mission:
    """A Mission from a Mission-like object (a Hydra ``MissionConfig`` node), an id or a Chinese name."""
    if isinstance(mission, str):
        found = all_missions().get(mission) or mission_named(mission)
        if found is None:
            raise KeyError(f"unknown mission {mission!r}; known: {_known()}")
        return found
    if isinstance(mission, Mission):
        return mission
    # the composed node of the chosen mission: the file, with any command-line override of its fields
    return Mission(str(mission.id), str(mission.name), str(mission.domain), tuple(mission.focus),
                   tuple(mission.categories), str(mission.decision))


def search_path_folders(sources: Iterable[Any]) -> list[Path]:
    """The ``mission/`` folders of Hydra's config search path (``hydra.runtime.config_sources``: entries
    with ``schema`` file or pkg and a ``path``), in search-path order, the package's own left out."""
    import importlib.resources

    folders: list[Path] = []
    for source in sources:
        schema, path = str(source["schema"]), str(source["path"])
        if schema == "file":
            folder = Path(path) / GROUP
        elif schema == "pkg":
            try:
                folder = Path(str(importlib.resources.files(path.replace("/", ".")) / GROUP))
            except (ModuleNotFoundError, TypeError, ValueError):
                continue  # a package Hydra itself could not read either
        else:
            continue  # structured:// (the ConfigStore) holds no missions
        if folder.is_dir() and folder.resolve() != BUILT_IN_DIR.resolve() and folder not in folders:
            folders.append(folder)
    return folders


def use_search_path(sources: Iterable[Any], taxonomy: Taxonomy) -> None:
    """Make the missions of the search path's ``mission/`` folders the running command's own (replacing any
    earlier ones). ``MissionError`` (one line, naming the file) for a file that is not a mission, an id or a
    name that two files share (a built-in's too); then nothing changes."""
    global _user
    taken = {m.id: (m, str(BUILT_IN_DIR / f"{m.id}.yaml")) for m in MISSIONS.values()}
    _user = _read_folders(search_path_folders(sources), taken, taxonomy)


def config_sources(cfg: Any) -> list[Any]:
    """Hydra's config search path as it composed ``cfg``: the config's own ``hydra`` node (Hydra's
    on_run_start callback), else the running job's (a sweep job, a Ray or SLURM worker); none outside
    Hydra (a config composed by hydra.compose without its hydra node): the built-in missions only."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    sources = OmegaConf.select(cfg, "hydra.runtime.config_sources", default=None)
    if sources is None and HydraConfig.initialized():
        sources = HydraConfig.get().runtime.config_sources
    return list(sources or ())


def config_problems(cfg: Any, taxonomy: Taxonomy) -> list[str]:
    """The missions of a command's config: its search path's read (``use_search_path``), the chosen one
    (``cfg.mission``) complete and one of them, and not without rules on the synthetic world. One line
    per problem. Runs while the config is validated, before any model loads, in every process that
    validates (so each sweep job and torchrun rank knows the same missions)."""
    from omegaconf import OmegaConf

    try:
        use_search_path(config_sources(cfg), taxonomy)
    except MissionError as exc:
        return [str(exc)]
    node = cfg.mission
    missing = [k for k in FIELDS if OmegaConf.is_missing(node, k)]
    if missing:
        return [f"mission.{missing[0]}: missing (a mission has {', '.join(FIELDS)})"]
    if node.id not in all_missions():
        return [f"mission.id={node.id}: no mission file {GROUP}/{node.id}.yaml in the config search path; "
                f"known: {_known()}"]
    # Rows, Stage-B's record checks and evaluation read a mission from its file, by id; only the composed node
    # would carry a command-line override, so the prompts and the rows would disagree. Refuse it.
    chosen, filed = resolve_mission(node), all_missions()[node.id]
    for key in FIELDS:
        if getattr(chosen, key) != getattr(filed, key):
            return [f"mission.{key}: differs from the mission file of {node.id} (an override?): every stage reads "
                    "a mission from its file; edit the file, or add your own mission (docs/data.md, "
                    "\"Your own missions\")"]
    # The synthetic world is drawn and labelled by the rules of bbuqc/missions/rules.py, which cover exactly
    # the built-in missions (it asserts so); a mission of your own has none there.
    if str(cfg.data.source) == "synthetic" and node.id not in MISSIONS:
        return [f"mission={node.id}: has no pass/fail rules for the synthetic world (bbuqc/missions/rules.py); "
                "use data.source=files with your own data"]
    return []
