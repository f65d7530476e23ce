"""Sweeps: the pieces around Hydra's `-m` that bbuqc adds.

- `bbuqc.sweep.records.SweepRecords` (a Hydra callback, registered in conf/common.yaml):
  every job's status and error in its folder, a summary of the sweep in the sweep folder.
- `bbuqc.sweep.comparison`: the comparison report (`python -m bbuqc.report <sweep folder>`), from
  `jobs` (read), `ranking` (rank), `render` (report.md / report.csv) and `plots` (PNGs).
- The `bbuqc_gpus_per_job` resolver used by conf/hydra/launcher/ray.yaml, registered when this
  package is imported (Hydra imports it with the callback, before it builds the launcher).

Import-light on purpose: nothing here imports torch, ray, wandb or matplotlib at import time.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings

from omegaconf import OmegaConf

from bbuqc.runtime.devices import local_gpu_count

GPUS_PER_JOB_RESOLVER = "bbuqc_gpus_per_job"


def gpus_per_job(address: str | None = None, per_job: int | str = 1) -> int:
    """GPUs each Ray job asks for: `per_job` (compute.nproc_per_node) on a GPU machine or when
    attaching to a cluster, else 0 (the jobs then run on CPU workers).

    `address` is hydra.launcher.ray.init.address (or $RAY_ADDRESS): a cluster's GPUs are not
    visible from here, so attaching assumes a GPU cluster (override
    hydra.launcher.ray.remote.num_gpus=0 if not).
    """
    per_job = max(1, int(per_job or 1))
    if address is None:
        address = os.environ.get("RAY_ADDRESS") or None  # ray.init() attaches to it too
    if address and address != "local":  # "local": always a fresh instance on this machine
        return per_job
    return per_job if local_gpu_count() > 0 else 0


JOB_DIRNAME_RESOLVER = "bbuqc_job_dirname"
_UNSAFE = re.compile(r"[^\w.,=+@-]", re.UNICODE)
MAX_DIRNAME = 120


def job_dirname(num: int | str, override_dirname: str) -> str:
    """A sweep job's folder: `<num>_<overrides>`, one flat readable name whatever the overrides.

    Hydra's own `override_dirname` keeps `/` from path values, so `model.path=/models/x` would
    nest folders; here every character a folder name should not carry becomes `_`, and a long
    name is cut (with a hash of the whole, so two jobs never share a folder).
    """
    name = _UNSAFE.sub("_", str(override_dirname))
    if len(name) > MAX_DIRNAME:
        digest = hashlib.sha1(str(override_dirname).encode()).hexdigest()[:8]
        name = f"{name[:MAX_DIRNAME]}-{digest}"
    return f"{num}_{name}" if name else str(num)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver(GPUS_PER_JOB_RESOLVER):
        OmegaConf.register_new_resolver(GPUS_PER_JOB_RESOLVER, gpus_per_job)
    if not OmegaConf.has_resolver(JOB_DIRNAME_RESOLVER):
        OmegaConf.register_new_resolver(JOB_DIRNAME_RESOLVER, job_dirname)


def quiet_launcher_schema_warning() -> None:
    """conf/hydra/launcher/ray.yaml shares its name with the plugin's schema, which Hydra 1.3
    merges it onto with a deprecation warning (see that file). The sweep composes every job's
    config again, so show the warning once, not once per job."""
    warnings.filterwarnings(
        "ignore",
        message=r"\s*'hydra/launcher/ray' is validated against ConfigStore schema with the same name",
        category=UserWarning,
    )


register_resolvers()
quiet_launcher_schema_warning()
