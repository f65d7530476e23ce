"""ConfigStore registration: the schema that types every command's primary config (conf/<command>.yaml), and the mission group."""

from __future__ import annotations

from dataclasses import asdict

from hydra.core.config_store import ConfigStore

from bbuqc.config.schema import BBUQCConfig
from bbuqc.missions import MISSIONS


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="bbuqc_schema", node=BBUQCConfig)
    # Missions come from the catalogue so prompts, data and configs share one source.
    # Plain dicts: the schema's `mission: MissionConfig` types them when they merge, and
    # dicts store several times faster than dataclasses (this runs on every `--cfg job`).
    for mission in MISSIONS.values():
        cs.store(group="mission", name=mission.id, node={**asdict(mission), "focus": list(mission.focus)})


register()
