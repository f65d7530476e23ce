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

from bbuqc.runtime.offline import use_offline_defaults

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> float | tuple[float, ...] | None:
    """Train; returns the held-out objective at the best checkpoint (what a sweeper optimises,
    bbuqc/sweep/objective.py), None without validation."""
    use_offline_defaults()
    from hydra.core.hydra_config import HydraConfig

    from bbuqc.sweep.objective import job_objective
    from bbuqc.training.diagnosis import write_summary

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.compute.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        _launch_distributed(cfg, run_dir)
        write_summary(run_dir, cfg.train.max_completion_length)
        return job_objective(cfg, run_dir)
    # Bad data fails here, before a W&B run or a checkpoint exists.
    inputs = prepare(cfg, run_dir)
    from bbuqc.sweep.lineage import log_checkpoints
    from bbuqc.tracking.runs import wandb_run
    from bbuqc.training.checkpoints import resume_in_place, wandb_run_id

    resume_in_place(cfg, run_dir)  # train.resume_from=auto -> a checkpoint or none; logs cut to its step
    # one W&B run per run folder: a resumed (or requeued) job continues the same run
    with wandb_run(cfg, run_dir, job_type=f"train-{cfg.task.name}", run_id=wandb_run_id(run_dir)) as wb:
        train(cfg, inputs, wandb=wb)
        log_checkpoints(wb, cfg, run_dir)  # the best (and last) checkpoint as W&B artifacts, by reference
    if "LOCAL_RANK" not in os.environ or os.environ["LOCAL_RANK"] == "0":
        write_summary(run_dir, cfg.train.max_completion_length)  # and warnings when it could not learn
    return job_objective(cfg, run_dir)


def prepare(cfg: DictConfig, run_dir: Path):
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
    data = prepare_datasets(cfg, run_dir / "data")
    if cfg.algo.name == "grpo":
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
            for callback in bbuqc_callbacks(cfg, trainer, inputs, wandb):
                trainer.add_callback(callback)
            return super().train(trainer)

    return Pipeline(Arguments(**swift_kwargs(cfg, inputs))).main()


def _launch_distributed(cfg: DictConfig, run_dir: Path) -> None:
    """Multi-GPU: the same job under torchrun, one process per GPU, sharing this run folder."""
    import subprocess
    import sys

    from hydra.core.hydra_config import HydraConfig

    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.run.dir=")]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={cfg.compute.nproc_per_node}",
        "-m", "bbuqc.train", *overrides, f"hydra.run.dir={run_dir}",
    ]
    log.info("launching %s", " ".join(cmd))
    subprocess.run(cmd, check=True)
