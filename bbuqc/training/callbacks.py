"""bbuqc's trainer callbacks, attached with `trainer.add_callback`.

- CHORD's mu is logged every step (ms-swift computes it but never logs it). It goes through
  the trainer's own metric buffer, so it lands in logging.jsonl and W&B like any metric.
- CHORD's SFT batches resume where they stopped (ChordSftOrderCallback).
- The trainable parameters are counted and listed once, so a run proves what LoRA touched.
- Reward scorer errors are counted per reward id every step (`rewards/<id>/errors`).
- Sampled completions every train.log_completions_steps steps (ms-swift's own table, switched per step).
- Held-out validation and the best checkpoint (bbuqc/training/validation.py) when train.eval_steps is set.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from omegaconf import DictConfig
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from bbuqc.io.run_folder import TRAINABLE, trainer_state
from bbuqc.runtime.kill_point import ENV as KILL_ENV
from bbuqc.runtime.kill_point import kill_point

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


class ChordSftOrderCallback(TrainerCallback, ExportableState):
    """Makes a resumed CHORD run see the SFT batches an uninterrupted run sees (issue 16.2).

    ms-swift builds CHORD's SFT iterator once, when the trainer is made: a cyclic DataLoader whose
    RandomSampler draws its order from the global torch RNG at first use, and nothing records how far it
    got, so a resumed run restarts it in another order. This replaces it, at train begin, with the same
    DataLoader (ms-swift's own get_chord_sft_dataloader) over a sampler with its own generator seeded by
    train.seed, counts the batches drawn, and saves the count in each checkpoint's trainer_state.json
    (transformers' stateful-callback record, written atomically with the checkpoint). On resume the
    iterator is rebuilt from the seed and advanced past that many batches.
    """

    def __init__(self, trainer, seed: int):
        self.trainer = trainer
        self.seed = seed
        self.consumed = 0

    def state(self) -> dict:
        return {"args": {"seed": self.seed}, "attributes": {"consumed": self.consumed}}

    def on_train_begin(self, args, state, control, **kwargs):
        import torch
        from swift.rlhf_trainers.utils import get_chord_sft_dataloader
        from torch.utils.data import RandomSampler

        t = self.trainer
        if getattr(t, "chord_sft_iterator", None) is None:
            return
        skip = _saved_consumed(args.resume_from_checkpoint, type(self).__name__)
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        loader = get_chord_sft_dataloader(
            trainer=t, dataset=t.chord_sft_dataset, description="Training",
            batch_size=args.chord_sft_per_device_train_batch_size,
            sampler_fn=lambda dataset: RandomSampler(dataset, generator=generator), is_training=True,
        )
        t.chord_sft_iterator = self._cycle(loader, skip)
        if skip:
            log.info("chord: SFT batches continue after the %d drawn before the checkpoint", skip)

    def _cycle(self, loader, skip: int):
        self.consumed, drawn = skip, 0
        while True:  # one pass per epoch of the SFT rows; the generator gives every epoch a new order
            for batch in loader:
                drawn += 1
                if drawn <= skip:
                    continue
                self.consumed = drawn
                yield batch


def _saved_consumed(checkpoint: str | None, name: str) -> int:
    if not checkpoint:
        return 0
    saved = (trainer_state(Path(checkpoint)) or {}).get("stateful_callbacks", {})
    record = saved.get(name, {})
    return int((record[-1] if isinstance(record, list) else record).get("attributes", {}).get("consumed", 0))


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
            (self.run_dir / TRAINABLE).write_text(json.dumps(report, indent=1))
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


class RewardErrorsCallback(TrainerCallback):
    """`rewards/<id>/errors` every step: rows whose scorer raised or left its range (scored 0.0, so a
    scorer bug shows as a count beside `rewards/<id>/mean` instead of a silent zero)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        from bbuqc.rewards.base import pop_error_metrics

        # the step's rewards were computed during it; ms-swift flushes this buffer into the step's log line
        for key, value in pop_error_metrics().items():
            self.trainer._metrics["train"][key].append(value)


class KillPointCallback(TrainerCallback):
    """Test-only (``BBUQC_TEST_KILL_AT=checkpoint:<n>``, bbuqc/runtime/kill_point.py): the job dies right after
    its n-th checkpoint is saved; attached only when that variable is set."""

    def on_save(self, args, state, control, **kwargs):
        kill_point("checkpoint")
        return control


def bbuqc_callbacks(cfg: DictConfig, trainer, inputs, wandb_run=None) -> list[TrainerCallback]:
    run_dir = Path(trainer.args.output_dir)
    callbacks: list[TrainerCallback] = [TrainableParamsCallback(trainer, run_dir, wandb_run)]
    if cfg.algo.name == "grpo":
        callbacks.append(RewardErrorsCallback(trainer))
    if cfg.chord.enabled and cfg.algo.name == "grpo":
        callbacks.append(ChordMuCallback(trainer, cfg.chord))
        callbacks.append(ChordSftOrderCallback(trainer, cfg.train.seed))
    if cfg.algo.name == "grpo" and cfg.train.log_completions_steps:
        trainer.log_completions = False  # until the first step due (ms-swift set it from args.log_completions)
        callbacks.append(CompletionsCallback(trainer, cfg.train.log_completions_steps))
    if inputs.validation is not None and cfg.train.eval_steps:
        from bbuqc.training.validation import ValidationCallback

        callbacks.append(ValidationCallback(cfg, trainer, inputs.validation, run_dir, wandb_run))
    if os.environ.get(KILL_ENV):
        callbacks.append(KillPointCallback())
    return callbacks
