"""Which node of a multi-node training run this process is, and how each node starts its processes.

A run spans ``nnodes`` nodes of ``compute.nproc_per_node`` processes each. The layout comes from
``compute.nnodes`` / ``node_rank`` / ``master_addr`` / ``master_port`` when ``compute.nnodes`` is set, else,
inside a ``hydra/launcher=slurm`` job of several nodes (``hydra.launcher.nodes``), from SLURM's own
environment through submitit (node count, node id, first host of the job's node list), else one node.

Each node's job process is a *launcher*: it starts ``torch.distributed.run`` with the same flags ms-swift's
own launcher derives from ``NPROC_PER_NODE`` / ``NNODES`` / ``NODE_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT``
(swift/cli/main.py), and puts those variables in the workers' environment too (ms-swift reads ``NNODES``
itself, e.g. to check that the nodes share a disk). Who writes what in the shared run folder:

- node 0's launcher: Hydra's record (``.hydra/``, ``cli.log``, ``job_status.json``), the prepared inputs
  (``data/``), and ``run_summary.json`` once the workers are done;
- the workers (``WORKER_ENV`` set): no Hydra record (``hydra.output_subdir=null``), each its own log
  ``rank<N>.log``; ms-swift, transformers and bbuqc's callbacks write checkpoints, ``logging.jsonl``,
  validation files and the W&B run from global rank 0 only (rank N adds its ``rng_state_N.pth``);
- another node's launcher: nothing (a single run starts its workers from the validation callback, before
  Hydra makes the run folder; a SLURM job through ``bbuqc.training.slurm``).

Import-light: the validation callback uses it (no torch, no training import).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bbuqc.errors import InputError

WORKER_ENV = "BBUQC_WORKER"  # set in the processes bbuqc's launcher starts under torch.distributed.run
DEFAULT_PORT = 29500  # torchrun's own default
RESOLVE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class NodeLayout:
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None  # None: this machine (one node)
    master_port: int | None = None  # None: a free port (one node), DEFAULT_PORT (several; see rendezvous)
    source: str = "compute"  # where it was read: "compute" (the config) or "SLURM"

    @property
    def rendezvous(self) -> tuple[str, int]:
        """Node 0's address and port as torchrun gets them: its own defaults where the layout leaves them unset."""
        return self.master_addr or "127.0.0.1", self.master_port or DEFAULT_PORT

    @property
    def field(self) -> str:
        """How a user names the master address in a message."""
        return "compute.master_addr" if self.source == "compute" else "SLURM_JOB_NODELIST (first host)"


def is_worker() -> bool:
    """This process was started by bbuqc's launcher (one rank of a multi-GPU or multi-node run)."""
    return os.environ.get(WORKER_ENV) == "1"


def _slurm_job() -> Any | None:
    """submitit's view of the SLURM job this process runs in (hydra/launcher=slurm), None outside one."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or "SLURM_JOB_ID" not in os.environ:
        return None
    import submitit

    return submitit.JobEnvironment()


def node_layout(compute: Any) -> NodeLayout:
    """The run's nodes: compute.nnodes and its fields when set, else SLURM's (a job of several nodes)."""
    if compute.get("nnodes") is not None:
        return NodeLayout(int(compute.nnodes), int(compute.get("node_rank") or 0), compute.get("master_addr"),
                          compute.get("master_port"), "compute")
    job = _slurm_job()
    if job is None or job.num_nodes <= 1:
        return NodeLayout(master_port=compute.get("master_port"))
    if job.num_tasks != job.num_nodes:
        raise InputError(f"hydra.launcher.nodes={job.num_nodes}: hydra.launcher.tasks_per_node must be 1 "
                         f"(SLURM started {job.num_tasks} tasks); bbuqc starts compute.nproc_per_node processes "
                         "on each node itself")
    return NodeLayout(job.num_nodes, job.node, job.hostnames[0], compute.get("master_port"), "SLURM")


def distributed(compute: Any, layout: NodeLayout | None = None) -> bool:
    """The run needs torch.distributed.run: several processes on this node, or several nodes."""
    layout = layout or node_layout(compute)
    return int(compute.nproc_per_node) > 1 or layout.nnodes > 1


def _resolves(host: str, timeout: float) -> bool:
    """getaddrinfo has no timeout of its own: ask in a thread and stop waiting after ``timeout``."""
    found: list[bool] = []

    def ask() -> None:
        try:
            socket.getaddrinfo(host, None)
            found.append(True)
        except (OSError, UnicodeError):
            found.append(False)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(found and found[0])


def require_rendezvous(cfg: Any, command: str, timeout: float = RESOLVE_TIMEOUT_S) -> None:
    """Refuse, in one line, a multi-node training run this node cannot join: a layout SLURM cannot give,
    or a master address that does not resolve here (checked where the job runs, like the GPUs)."""
    if command != "train":
        return
    job = None if is_worker() else _slurm_job()  # a worker gets the SLURM layout spelled out as compute.*
    if job is not None and job.num_nodes > 1 and cfg.compute.get("nnodes") is not None:
        raise InputError(f"compute.nnodes={cfg.compute.nnodes}: this SLURM job has {job.num_nodes} nodes "
                         "(hydra.launcher.nodes), which give the layout; leave compute.nnodes, node_rank and "
                         "master_addr null")
    layout = node_layout(cfg.compute)
    hydra = cfg.get("hydra")  # a single run's config (the validation callback); a sweep job's folder is the sweep's
    if layout.nnodes > 1 and hydra is not None and hydra.get("mode") != "MULTIRUN" and not any(
            _key(o) == "hydra.run.dir" for o in hydra.overrides.hydra):
        # without it each node would make its own dated folder, and node 0's prepared inputs would be elsewhere
        raise InputError(f"compute.nnodes={layout.nnodes}: every node works in one run folder; set "
                         "hydra.run.dir=<a folder all nodes share>, the same on each node")
    if layout.nnodes > 1 and layout.master_addr and not _resolves(layout.master_addr, timeout):
        raise InputError(f"{layout.field}={layout.master_addr}: does not resolve to an address from this node "
                         f"(within {timeout:g} s); expected node 0's host name or IP, the same on every node")


def torchrun_command(nproc_per_node: int, layout: NodeLayout) -> list[str]:
    """``python -m torch.distributed.run`` with ms-swift's launcher flags (swift/cli/main.py)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc_per_node)]
    if layout.nnodes == 1 and layout.master_port is None:
        return cmd + ["--standalone"]  # one node: a free port, so two runs on one machine never collide
    addr, port = layout.rendezvous
    cmd += ["--master_port", str(port)]
    if layout.nnodes > 1:
        cmd += ["--nnodes", str(layout.nnodes), "--node_rank", str(layout.node_rank), "--master_addr", addr]
    return cmd


def worker_environment(nproc_per_node: int, layout: NodeLayout) -> dict[str, str]:
    """What ms-swift's launcher would have in the environment, plus the worker mark."""
    env = {**os.environ, WORKER_ENV: "1", "NPROC_PER_NODE": str(nproc_per_node), "NNODES": str(layout.nnodes),
           "NODE_RANK": str(layout.node_rank)}
    if layout.nnodes > 1:
        addr, port = layout.rendezvous
        env.update(MASTER_ADDR=addr, MASTER_PORT=str(port))
    return env


LAYOUT_FIELDS = ("nnodes", "node_rank", "master_addr", "master_port")


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


#: the search-path entries a user gave: --config-dir, hydra.searchpath on the command line or in a primary config
_USER_SOURCES = ("command-line", "hydra.searchpath in command-line", "hydra.searchpath in main")


def search_path_override(hydra_cfg: Any) -> list[str]:
    """``hydra.searchpath=[...]`` naming the job's own config folders (``--config-dir``, ``hydra.searchpath``),
    or nothing: the task overrides alone would lose them, and a worker could not compose ``mission=<yours>``
    (docs/data.md, "Your own missions") or another option of your folder."""
    runtime = hydra_cfg.get("runtime") or {}
    entries = [f"{s['schema']}://{s['path']}" for s in runtime.get("config_sources") or ()
               if s["provider"] in _USER_SOURCES]
    return ["hydra.searchpath=[" + ",".join(f"'{e}'" for e in entries) + "]"] if entries else []


def worker_overrides(hydra_cfg: Any, run_dir: Path, layout: NodeLayout) -> list[str]:
    """The job's own overrides with the layout spelled out (a SLURM-given one too, so every worker checks
    its batch sizes against the real world size), into the same run folder, without Hydra's record (node 0's
    launcher wrote it) and with one log file per rank."""
    own = {"hydra.run.dir", *(f"compute.{key}" for key in LAYOUT_FIELDS)}
    out = [o for o in hydra_cfg.overrides.task if _key(o) not in own]
    if layout.nnodes > 1:
        addr, port = layout.rendezvous
        out += [f"compute.nnodes={layout.nnodes}", f"compute.node_rank={layout.node_rank}",
                f"compute.master_addr={addr}", f"compute.master_port={port}"]
    out += [f"hydra.run.dir={run_dir}", "hydra.output_subdir=null", *search_path_override(hydra_cfg)]
    handlers = hydra_cfg.get("job_logging", {}).get("handlers", {}) or {}
    if "file" in handlers:
        out.append("hydra.job_logging.handlers.file.filename=${hydra.runtime.output_dir}/rank${oc.env:RANK}.log")
    return out


def launch(module: str, hydra_cfg: Any, compute: Any, run_dir: Path, layout: NodeLayout | None = None) -> int:
    """Run ``python -m <module>`` under torch.distributed.run on this node; its exit status."""
    import logging

    layout = layout or node_layout(compute)
    nproc = int(compute.nproc_per_node)
    cmd = [*torchrun_command(nproc, layout), "-m", module, *worker_overrides(hydra_cfg, run_dir, layout)]
    logging.getLogger(__name__).info("node %d of %d: launching %s", layout.node_rank, layout.nnodes, " ".join(cmd))
    return subprocess.run(cmd, env=worker_environment(nproc, layout)).returncode


def other_node_launcher(cfg: Any, command: str) -> bool:
    """A single training run's job process on a node other than 0: it starts its workers and writes nothing."""
    return (command == "train" and not is_worker() and "LOCAL_RANK" not in os.environ
            and node_layout(cfg.compute).node_rank > 0)


def run_other_node(config: Any, command: str) -> int:
    """For the validation callback (``config`` holds the hydra node): launch this node's workers into the
    run folder and return their exit status, before Hydra writes anything here."""
    from omegaconf import OmegaConf

    run_dir = Path(str(OmegaConf.select(config, "hydra.run.dir")))
    return launch(f"bbuqc.{command}", config.hydra, config.compute, run_dir)
