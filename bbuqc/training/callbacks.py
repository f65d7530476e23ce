"""bbuqc's trainer callbacks, attached with `trainer.add_callback`.

- CHORD's mu is logged every step (ms-swift computes it but never logs it). It goes through
  the trainer's own metric buffer, so it lands in logging.jsonl and W&B like any metric.
- The trainable parameters are counted and listed once, so a run proves what LoRA touched.
- Sampled completions every train.log_completions_steps steps (ms-swift's own table, switched per step).
- Held-out validation and the best checkpoint (bbuqc/training/validation.py) when train.eval_steps is set.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import DictConfig
from transformers import TrainerCallback

log = logging.getLogger(__name__)


class ChordMuCallback(TrainerCallback):
    def __init__(self, trainer, chord: DictConfig):
        self.trainer = trainer
        self.chord = chord

    def on_step_begin(self, args, state, control, **kwargs):
        from swift.rlhf_trainers.utils import mu_schedule_function

        c = self.chord
        # the same call, at the same global step, that compute_chord_loss makes for this step
        mu = mu_schedule_function(state.global_step, c.mu_warmup_steps, c.mu_decay_steps, c.mu_peak, c.mu_valley)
        self.trainer._metrics["train"]["chord/mu"].append(float(mu))


class TrainableParamsCallback(TrainerCallback):
    def __init__(self, trainer, run_dir: Path, wandb_run=None):
        self.trainer = trainer
        self.run_dir = run_dir
        self.wandb_run = wandb_run

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        model = model or self.trainer.model
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log.info("trainable parameters: %d of %d (%.4f%%)", count, total, 100 * count / max(total, 1))
        if state.is_world_process_zero:
            report = {"trainable": count, "total": total, "names": names}
            (self.run_dir / "trainable_parameters.json").write_text(json.dumps(report, indent=1))
            if self.wandb_run is not None:
                self.wandb_run.summary.update({"params/trainable": count, "params/total": total})


class CompletionsCallback(TrainerCallback):
    """Sampled completions every `train.log_completions_steps` steps, through ms-swift's own writer.

    ms-swift (GRPOTrainer.log) appends prompt, completion, every reward, the advantage and the step to
    <run folder>/completions.jsonl and logs a W&B table `completions` whenever it logs and
    `trainer.log_completions` is true; this only switches that flag per step. `on_step_end` runs just
    before the step's log; the end-of-training summary log carries no new rollouts, so it is switched off.
    """

    def __init__(self, trainer, every: int):
        self.trainer = trainer
        self.every = every

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.log_completions = state.global_step % self.every == 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "train_runtime" in logs:
            self.trainer.log_completions = False


def bbuqc_callbacks(cfg: DictConfig, trainer, inputs, wandb_run=None) -> list[TrainerCallback]:
    run_dir = Path(trainer.args.output_dir)
    callbacks: list[TrainerCallback] = [TrainableParamsCallback(trainer, run_dir, wandb_run)]
    if cfg.chord.enabled and cfg.algo.name == "grpo":
        callbacks.append(ChordMuCallback(trainer, cfg.chord))
    if cfg.algo.name == "grpo" and cfg.train.log_completions_steps:
        trainer.log_completions = False  # until the first step due (ms-swift set it from args.log_completions)
        callbacks.append(CompletionsCallback(trainer, cfg.train.log_completions_steps))
    if inputs.validation is not None and cfg.train.eval_steps:
        from bbuqc.training.validation import ValidationCallback

        callbacks.append(ValidationCallback(cfg, trainer, inputs.validation, run_dir, wandb_run))
    return callbacks
