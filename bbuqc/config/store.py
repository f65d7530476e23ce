"""ConfigStore registration: the schema that types conf/config.yaml, and the mission group."""

from __future__ import annotations

from dataclasses import asdict

from hydra.core.config_store import ConfigStore

from bbuqc.config.schema import BBUQCConfig, MissionConfig
from bbuqc.missions import MISSIONS


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="bbuqc_schema", node=BBUQCConfig)
    # Missions come from the catalogue so prompts, data and configs share one source.
    for mission in MISSIONS.values():
        node = asdict(mission)
        node["focus"] = list(mission.focus)
        cs.store(group="mission", name=mission.id, node=MissionConfig(**node))


register()
