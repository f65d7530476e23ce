"""What each command validates before any model loads: ``COMMAND_CHECKS``, run by the entry point
(bbuqc/cli.py: the on_run_start callback for a single run, the job itself in a sweep).

A command's checks are its nodes' own rules (``node(schema.check_<node>)``), the rules across nodes
(bbuqc/config/validate.py), and the rules that read the model's files (bbuqc/models/checks.py) or need
training's knowledge (bbuqc/training/checks.py). They live beside what they read, so bbuqc/config stays a
leaf; this is the one list. Each check returns one line per problem naming the field, so `bbuqc-infer`
never refuses a run because of a `lora` or `reward` field. Nothing here imports torch, transformers or
ms-swift.
"""

from __future__ import annotations

from omegaconf import DictConfig

from bbuqc.config import schema as S
from bbuqc.config import validate as V
from bbuqc.config.validate import Check, ConfigError, node
from bbuqc.models import checks as M
from bbuqc.training import checks as T


def missions(cfg: DictConfig) -> list[str]:
    """The missions of your own config folder (its mission/*.yaml on Hydra's search path) read beside the
    built-in ones, and the chosen one known (bbuqc/missions/catalogue.py). Called from here: the taxonomy a
    mission is held to is the prompts', and the prompts import the missions."""
    from bbuqc.missions.catalogue import config_problems
    from bbuqc.prompts.summary import TAXONOMY

    return config_problems(cfg, TAXONOMY)


COMMAND_CHECKS: dict[str, tuple[Check, ...]] = {
    "train": (missions,
              node(S.check_reward), V.rewards_fit_task, node(S.check_train), T.resume_checkpoint, V.batch_sizes,
              node(S.check_chord), node(S.check_lora), M.lora_depth, V.vision_lora, M.adapter_lora,
              node(S.check_model), M.model_files, M.adapter_fits_base, node(S.check_data), node(S.check_compute),
              V.algo_data, T.swift_rows, T.validation_data, V.grpo_only, T.extra_arguments, V.verdict_line_weight),
    "infer": (missions,
              node(S.check_model), M.model_files, M.adapter_fits_base, node(S.check_data), node(S.check_compute),
              node(S.check_infer), V.infer_inputs, M.vllm_adapter),
    "evaluate": (missions, node(S.check_model), M.model_files, M.adapter_fits_base, node(S.check_data),
                 node(S.check_compute), node(S.check_evaluate), V.evaluate_inputs, M.evaluate_vllm_adapter,
                 node(S.check_reward)),  # evaluation scores with the reward parameters
    "export": (node(S.check_model), M.model_files, M.export_base, node(S.check_export)),
}


def problems(cfg: DictConfig, command: str) -> list[str]:
    return [line for check in COMMAND_CHECKS[command] for line in check(cfg)]


def validate(cfg: DictConfig, command: str) -> None:
    found = problems(cfg, command)
    if found:
        raise ConfigError(found)


def load_config_extensions(cfg: DictConfig) -> None:
    """What every process of a run loads from its config: the reward plug-ins (``reward.plugins``) and the
    missions of the config's search path. Validation loads them as it checks them; a rank that bbuqc's launcher
    started skips the checks (its launcher ran them on this very config) and loads them here."""
    from bbuqc.missions.catalogue import config_sources, use_search_path
    from bbuqc.prompts.summary import TAXONOMY
    from bbuqc.rewards.plugins import load_plugins

    use_search_path(config_sources(cfg), TAXONOMY)
    if "reward" in cfg:
        load_plugins(list(cfg.reward.get("plugins") or []))


def preflight(cfg: DictConfig, command: str) -> None:
    """Everything a run is checked for before it starts, in one place for single runs and sweep jobs: the
    config, the devices it names, and (several nodes) the rendezvous address."""
    from bbuqc.runtime.devices import require_devices
    from bbuqc.runtime.nodes import require_rendezvous

    validate(cfg, command)
    require_devices(cfg, command)
    require_rendezvous(cfg, command)
