"""GRPO step time of `python -m bbuqc.train` against a bare `swift rlhf` with the same arguments.

Both train the same tiny model on the same rows with the same rewards; the bare run gets
the arguments bbuqc passed to ms-swift (the run's args.json) and the reward classes through
ms-swift's own `external_plugins`. Step time = median of `step_time` over the logged steps
after the first (warm-up). Goal: ratio <= 1.05.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from common import REPO, wall_time, write_result

STEPS = 8
OVERRIDES = ["task=verdict", "reward=verdict", f"train.max_steps={STEPS}", "train.save_steps=1000", "logger=none"]


def step_times(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "logging.jsonl").read_text().splitlines()]
    return [r["step_time"] for r in rows if "step_time" in r][1:]


def bare_swift_config(run_dir: Path, out_dir: Path) -> Path:
    """The exact RLHFArguments bbuqc built (from its args.json), pointed at a new output dir."""

    args = json.loads((run_dir / "args.json").read_text())
    kw = {k: args[k] for k in (
        "rlhf_type", "model", "model_type", "template", "check_model", "use_hf", "torch_dtype", "tuner_type",
        "target_regex", "lora_rank", "lora_alpha", "lora_dropout", "freeze_vit", "freeze_aligner", "dataset",
        "split_dataset_ratio", "remove_unused_columns", "dataset_num_proc", "dataloader_num_workers", "max_length",
        "reward_funcs", "reward_weights", "num_generations", "generation_batch_size", "per_device_train_batch_size",
        "gradient_accumulation_steps", "max_completion_length", "temperature", "beta", "learning_rate", "max_steps",
        "seed", "data_seed", "add_version", "save_strategy", "save_steps", "logging_steps", "report_to",
        "use_cpu", "bf16", "fp16", "gradient_checkpointing",
    )}
    plugin = out_dir / "bbuqc_rewards_plugin.py"
    plugin.write_text(
        "from bbuqc.training.rewards import register_rewards\n"
        f"register_rewards({kw['reward_funcs']!r})\n"
    )
    kw.update(output_dir=str(out_dir / "run"), external_plugins=[str(plugin)])
    kw["report_to"] = kw["report_to"] or ["none"]  # the CLI cannot take an empty list
    config = out_dir / "swift_args.json"
    config.write_text(json.dumps(kw, ensure_ascii=False))
    return config


def main(rounds: int = 2) -> None:
    """Alternate bbuqc and bare runs so both see the same machine load."""
    ours, bare, ours_wall, bare_wall = [], [], [], []
    swift = str(Path(sys.executable).parent / "swift")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            ours_dir, bare_dir = Path(tmp) / f"bbuqc{i}", Path(tmp) / f"bare{i}"
            bare_dir.mkdir()
            ours_wall.append(wall_time([sys.executable, "-m", "bbuqc.train", *OVERRIDES, f"hydra.run.dir={ours_dir}"]))
            config = bare_swift_config(ours_dir, bare_dir)
            bare_wall.append(wall_time([swift, "rlhf", str(config)], env={"PYTHONPATH": str(REPO)}))
            ours += step_times(ours_dir)
            bare += step_times(bare_dir / "run")
    ours_step, bare_step = statistics.median(ours), statistics.median(bare)
    write_result("grpo_overhead", {
        "bbuqc_step_s": round(ours_step, 4), "bare_swift_step_s": round(bare_step, 4),
        "ratio": round(ours_step / bare_step, 3), "goal": 1.05, "steps_per_run": STEPS, "rounds": rounds,
        "bbuqc_wall_s": [round(w, 1) for w in ours_wall], "bare_swift_wall_s": [round(w, 1) for w in bare_wall],
    })


if __name__ == "__main__":
    main()
