"""What a measured figure depends on besides the code: the CPU's kernels and the library versions.

The same code, seeds and data give other weights on another machine: torch and MKL pick their CPU kernels by
instruction set (AVX2, AVX-512, AMX), and kernels that sum in another order round differently; over thousands
of training steps the runs part. Measured on one machine: the demo's pretrained summary twin built with torch's
AVX-512 kernels and with its AVX2 ones gives two different weight files, and neither is the file pinned on the
machine of the sessions before (docs/demo.md, 2026-12-07 fifth session). So every figure the demo and the
lifecycle benchmark record carries :func:`describe`, and the twin pin (tests/models/test_tiny.py) names it.
"""

from __future__ import annotations

import importlib.metadata
import platform

#: the libraries whose numerics or training loop make the figures
LIBRARIES = ("torch", "transformers", "peft", "trl", "ms-swift", "accelerate", "datasets", "numpy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict:
    """The machine and libraries a figure was measured with: CPU model, the instruction set torch's CPU kernels
    use (``ATEN_CPU_CAPABILITY`` can lower it), the GPU if any, and the versions of :data:`LIBRARIES`."""
    import torch

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu_model(),
        "torch_cpu_kernels": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "versions": versions,
    }


def one_line(env: dict) -> str:
    """:func:`describe` for a report line or an assertion message."""
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    gpu = f", GPU {env['gpu']}" if env.get("gpu") else ""
    return f"{env['cpu']} (torch CPU kernels {env['torch_cpu_kernels']}{gpu}); {versions}"
