"""Which devices this process can use, asked before any model loads (no torch import)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bbuqc.errors import InputError


def local_gpu_count() -> int:
    """CUDA devices this process may use, found without importing torch.

    CUDA_VISIBLE_DEVICES wins when set (empty or -1 hides every device); otherwise the NVIDIA
    driver's device list (/proc/driver/nvidia/gpus, else `nvidia-smi -L`).
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        if not ids or ids[0] in ("-1", "NoDevFiles"):
            return 0
        return len(ids)
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return sum(1 for _ in proc.iterdir())
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return 0
        return sum(1 for line in out.splitlines() if line.startswith("GPU "))
    return 0


def require_devices(cfg: Any, command: str) -> None:
    """Refuse, in one line naming the field, a run of ``command`` (train / infer / evaluate) that asks for CUDA
    where no CUDA device is visible: it would load the model and fail later with a library's traceback. Only
    the command's own node counts (every command's config carries both ``infer`` and ``evaluate``). Runs where
    the job runs (a Ray or SLURM job on its GPU node), not where a sweep is launched from."""
    from bbuqc.runtime.ray_pool import on_ray

    node = command if command in ("infer", "evaluate") else None
    if node and on_ray(cfg, node):
        return  # Ray Data's actors hold the models: the cluster's GPUs are checked there (bbuqc/runtime/ray_pool.py)
    wants = []
    if str(cfg.compute.device) == "cuda":
        wants.append("compute.device=cuda")
    # vLLM missing altogether is the backend's own refusal (it names the install); installed, it needs CUDA
    if node and str(cfg[node].get("backend", "hf")) == "vllm" and importlib.util.find_spec("vllm"):
        wants.append(f"{node}.backend=vllm")
    if wants and local_gpu_count() == 0:
        raise InputError(f"{', '.join(wants)}: no CUDA device is visible here (CUDA_VISIBLE_DEVICES, "
                         "/proc/driver/nvidia/gpus, nvidia-smi); use compute=cpu (and infer.backend=hf) or run "
                         "on a GPU node")
