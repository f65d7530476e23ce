"""bbuqc's trainer callbacks, attached with `trainer.add_callback`.

- CHORD's mu is logged every step (ms-swift computes it but never logs it). It goes through
  the trainer's own metric buffer, so it lands in logging.jsonl and W&B like any metric.
- The trainable parameters are counted and listed once, so a run proves what LoRA touched.
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


def bbuqc_callbacks(cfg: DictConfig, trainer, inputs, wandb_run=None) -> list[TrainerCallback]:
    run_dir = Path(trainer.args.output_dir)
    callbacks: list[TrainerCallback] = [TrainableParamsCallback(trainer, run_dir, wandb_run)]
    if cfg.chord.enabled and cfg.algo.name == "grpo":
        callbacks.append(ChordMuCallback(trainer, cfg.chord))
    if inputs.validation is not None and cfg.train.eval_steps:
        from bbuqc.training.validation import ValidationCallback

        callbacks.append(ValidationCallback(cfg, trainer, inputs.validation, run_dir, wandb_run))
    return callbacks
