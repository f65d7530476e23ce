"""ConfigStore registration: the schema that types every command's primary config (conf/<command>.yaml).

The `mission` group is not registered here: its options are the YAML files of conf/mission/ (and of a
user's own config folder on the search path), which bbuqc.missions reads too (one source).
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from bbuqc.config.schema import BBUQCConfig


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="bbuqc_schema", node=BBUQCConfig)


register()
