"""`python -m bbuqc.train`: the validated config tree -> an ms-swift GRPO or SFT run.

The training loop is ms-swift's (SwiftRLHF, the class behind `rlhf_main`, for algo=grpo; SwiftSft,
behind `sft_main`, for algo=sft); this module prepares the inputs (model folder and adapter, data and
validation rows, LoRA regex, reward registration), opens the W&B run and attaches bbuqc's callbacks.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from bbuqc.io.run_folder import DATA
from bbuqc.runtime.offline import use_offline_defaults

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> float | tuple[float, ...] | None:
    """Train; returns the held-out objective at the best checkpoint (what a sweeper optimises,
    bbuqc/training/objective.py), None without validation."""
    use_offline_defaults()
    from hydra.core.hydra_config import HydraConfig

    from bbuqc.runtime.nodes import distributed, is_worker, node_layout
    from bbuqc.training.diagnosis import write_summary
    from bbuqc.training.objective import job_objective

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if is_worker():  # one rank of a run bbuqc launched: node 0's launcher prepared the inputs
        _train_logged(cfg, read_prepared(cfg, run_dir), run_dir)
        return None  # the launcher writes the summary and reports the objective
    layout = node_layout(cfg.compute)
    if distributed(cfg.compute, layout) and "LOCAL_RANK" not in os.environ:
        if layout.node_rank == 0:  # once, before any worker starts: bad data fails here, in one process
            write_prepared(run_dir, prepare(cfg, run_dir, register_rewards=False), cfg)
        _launch_distributed(cfg, run_dir, layout)
        if layout.node_rank:
            return None  # node 0 reports the run
        write_summary(run_dir, cfg.train.max_completion_length)
        return job_objective(cfg, run_dir)
    # Bad data fails here, before a W&B run or a checkpoint exists.
    inputs = prepare(cfg, run_dir)
    from bbuqc.training.checkpoints import resume_in_place

    resume_in_place(cfg, run_dir)  # train.resume_from=auto -> a checkpoint or none; logs cut to its step
    _train_logged(cfg, inputs, run_dir)
    if int(os.environ.get("RANK", "0")) == 0:  # under your own torchrun: global rank 0
        write_summary(run_dir, cfg.train.max_completion_length)  # and warnings when it could not learn
    return job_objective(cfg, run_dir)


def _train_logged(cfg: DictConfig, inputs, run_dir: Path) -> None:
    from bbuqc.tracking.lineage import log_checkpoints
    from bbuqc.tracking.runs import wandb_run
    from bbuqc.training.checkpoints import wandb_run_id

    # one W&B run per run folder: a resumed (or requeued) job continues the same run
    with wandb_run(cfg, run_dir, job_type=f"train-{cfg.task.name}", run_id=wandb_run_id(run_dir)) as wb:
        train(cfg, inputs, wandb=wb)
        log_checkpoints(wb, cfg, run_dir)  # the best (and last) checkpoint as W&B artifacts, by reference


# What node 0's launcher prepared for the workers of every node (they read it, never write it): the run
# inputs, and train.resume_from resolved once (auto -> a checkpoint; the logs cut to its step once).
PREPARED = "data/run_inputs.json"


def write_prepared(run_dir: Path, inputs, cfg: DictConfig) -> None:
    import dataclasses

    from bbuqc.io.atomic import write_json_atomic
    from bbuqc.training.checkpoints import resume_in_place

    resume_in_place(cfg, run_dir)
    fields = {k: (None if v is None else str(v)) for k, v in dataclasses.asdict(inputs).items()}
    write_json_atomic(run_dir / PREPARED, {"inputs": fields, "resume_from": cfg.train.resume_from})


def read_prepared(cfg: DictConfig, run_dir: Path):
    import dataclasses
    import json

    from bbuqc.training.args import RunInputs

    record = json.loads((run_dir / PREPARED).read_text(encoding="utf-8"))
    paths = {f.name for f in dataclasses.fields(RunInputs) if "Path" in str(f.type)}
    inputs = RunInputs(**{k: (Path(v) if k in paths and v is not None else v) for k, v in record["inputs"].items()})
    cfg.train.resume_from = record["resume_from"]
    if cfg.algo.name == "grpo":
        from bbuqc.training.rewards import register_config_rewards

        register_config_rewards(cfg)  # ms-swift's reward registry is per process
    return inputs


def prepare(cfg: DictConfig, run_dir: Path, register_rewards: bool = True):
    from bbuqc.errors import InputError
    from bbuqc.models.resolve import resolve_model
    from bbuqc.training.args import RunInputs
    from bbuqc.training.data import prepare_datasets
    from bbuqc.training.lora import linear_module_names, lora_target_regex, modules_to_save_problem

    model = resolve_model(cfg)  # sets MAX_PIXELS, which the training copies of images follow
    problem = modules_to_save_problem(model.path, cfg.lora.modules_to_save)
    if problem:
        raise InputError(problem)
    lora = cfg.lora
    try:  # validation compares lora.last_k with the config's depth; the checkpoint's own modules decide here
        regex, targets = lora_target_regex(linear_module_names(model.path), lora.last_k, vision=lora.vision,
                                           aligner=lora.aligner)
    except ValueError as exc:
        raise InputError(f"{exc} ({model.path})") from None
    log.info("LoRA on the last %d LLM blocks%s%s: %d Linear modules", lora.last_k,
             " + the vision tower" if lora.vision else "", " + the aligner" if lora.aligner else "", len(targets))
    data = prepare_datasets(cfg, run_dir / DATA)
    if cfg.algo.name == "grpo" and register_rewards:
        # imported once the data passed (it imports ms-swift: ~9 s of CPU), so bad data is refused sooner
        from bbuqc.training.rewards import register_config_rewards

        register_config_rewards(cfg)  # the set's ids, each built with its reward.params
    return RunInputs(
        run_dir=run_dir,
        model_dir=model.path,
        model_type=model.model_type,
        template=model.template,
        dataset=data.train,
        lora_regex=regex,
        chord_sft_dataset=data.chord_sft,
        adapter=model.adapter,
        validation=data.validation,
    )


def train(cfg: DictConfig, inputs, wandb=None) -> dict:
    """One ms-swift pipeline (SwiftRLHF for GRPO, SwiftSft for SFT) with bbuqc's callbacks attached."""
    from bbuqc.models.swift_template import register_templates
    from bbuqc.training.args import swift_kwargs
    from bbuqc.training.callbacks import bbuqc_callbacks

    register_templates()  # a compact-vocabulary twin's template (models/swift_template.py)

    if cfg.algo.name == "grpo":
        from swift import RLHFArguments as Arguments
        from swift.pipelines.train.rlhf import SwiftRLHF as Base
    else:
        from swift import SftArguments as Arguments
        from swift.pipelines.train.sft import SwiftSft as Base

    class Pipeline(Base):
        def train(self, trainer):
            from bbuqc.models.generation import forbid_vision_placeholders

            forbid_vision_placeholders(trainer.model)  # before any rollout or validation generates
            for callback in bbuqc_callbacks(cfg, trainer, inputs, wandb):
                trainer.add_callback(callback)
            return super().train(trainer)

    return Pipeline(Arguments(**swift_kwargs(cfg, inputs))).main()


def _launch_distributed(cfg: DictConfig, run_dir: Path, layout) -> None:
    """Multi-GPU, multi-node: this node's processes under torchrun, sharing this run folder
    (bbuqc/runtime/nodes.py: ms-swift's launcher flags, who writes what)."""
    from hydra.core.hydra_config import HydraConfig

    from bbuqc.runtime.nodes import launch

    code = launch("bbuqc.train", HydraConfig.get(), cfg.compute, run_dir, layout)
    if code:
        raise RuntimeError(f"node {layout.node_rank}: torch.distributed.run exited {code} (the ranks' logs: "
                           f"{run_dir}/rank<N>.log)")
