"""Batch inference on Ray Data, shared by Stage-A (``infer.workers``) and evaluation (``evaluate.workers``):
the one fan-out of both commands.

- :func:`cluster_for` / :func:`fan_out`: what a command calls. The cluster is joined before the command
  opens its output (an unreachable ``<node>.ray_address`` leaves nothing behind); the payloads go to
  ``<node>.workers`` actors built from the config (:func:`worker_config`), results come back in order,
  and a Ray failure past the retries is one line naming ``<node>.workers``, how much of the run is
  already written and where, and that re-running the same command resumes.

- :func:`ray_cluster`: attach to a cluster (``ray_address=auto|<host:port>``) or start a local
  one and shut it down afterwards. An address that cannot be reached is one line naming the
  field, within a few seconds; on a GPU run, asking for more workers than the cluster has
  GPUs is refused (one line) rather than capped: a silently smaller pool would make a
  multi-hour run slower than the user planned, and Ray would otherwise wait forever.
- :func:`ordered_map`: ``chunks`` (JSON-able payloads, each one batch of work) are mapped by
  ``workers`` Ray actors, each holding one model (``num_gpus=1`` each on a GPU run). Ray Data
  streams the chunks to the actors and applies back-pressure. Results arrive in any order;
  they are yielded **in chunk order**, each as soon as it and every chunk before it are back,
  so the caller writes its file in discovery order while the actors keep working.
- Retries: the actors are created with ``max_restarts`` / ``max_task_retries``
  (:data:`MAX_RETRIES`): an actor process that dies (killed, OOM) is restarted and the chunk it
  was working on runs again; its results reach the driver once, as only a completed task
  returns anything. Past the limit the run stops with one line; whatever was written stays
  and a re-run resumes.

The worker classes live with their command (bbuqc.stage_a.workers.StageAWorker,
bbuqc.stage_b.runner.VerdictWorker); ray is imported only here and only when
the command runs on Ray.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from bbuqc.errors import InputError

log = logging.getLogger(__name__)

MAX_RETRIES = 3  # restarts of a dead actor, and re-runs of the chunk it held
CONNECT_TIMEOUT_S = 5.0


class ClusterError(InputError):
    """A Ray cluster that cannot be used as configured; the message is one line naming the field."""


def _check_reachable(address: str, field: str) -> None:
    """Fail within seconds when ``address`` (host:port, ray://host:port) does not answer; ``auto``
    is resolved by Ray itself, which fails at once when no cluster runs on this machine."""
    if address == "auto" or address.startswith("local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"{field}={address}: expected auto, <host>:<port> or ray://<host>:<port>")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ClusterError(f"{field}={address}: no Ray cluster answers there ({exc.strerror or exc})") from None


@contextmanager
def ray_cluster(address: str | None, *, field: str, workers: int, workers_field: str, gpus: bool) -> Iterator[None]:
    """A usable Ray cluster for ``workers`` actors (one GPU each when ``gpus``)."""
    import ray

    if ray.is_initialized():  # e.g. inside a Ray sweep job: use the cluster already joined
        started = False
    else:
        if address:
            _check_reachable(address, field)
        kwargs: dict[str, Any] = dict(include_dashboard=False, log_to_driver=True, configure_logging=False)
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                # one CPU per worker plus one for the driver's reading and writing
                ray.init(num_cpus=max(workers + 1, os.cpu_count() or 1), **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if not address:
                raise
            raise ClusterError(f"{field}={address}: cannot attach to a Ray cluster ({str(exc).splitlines()[0]})") from None
        started = True
    try:
        if gpus:
            have = int(ray.cluster_resources().get("GPU", 0))
            if workers > have:
                fix = f"set {workers_field}<={have}" if have else "use compute.device=cpu, or a cluster with GPUs"
                raise ClusterError(f"{workers_field}={workers}: the Ray cluster has {have} GPU(s) and every worker "
                                   f"needs one; {fix}")
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the command draws its own bars
        ctx.print_on_execution_start = False
        yield
    finally:
        if started:
            ray.shutdown()


def on_ray(cfg, node: str) -> bool:
    """Whether command node ``node`` (``infer`` / ``evaluate``) runs its model on Ray: several workers, or a
    named cluster (``ray_address``: even one worker runs there, its model on the cluster's GPU)."""
    return int(cfg[node].get("workers", 1)) > 1 or cfg[node].get("ray_address") is not None


def cluster_for(cfg, node: str, *, use: bool) -> AbstractContextManager[None]:
    """The Ray cluster of command node ``node`` (``infer`` / ``evaluate``: its ``ray_address`` and
    ``workers``) when ``use``, else nothing to join."""
    if not use:
        return nullcontext()
    return ray_cluster(cfg[node].get("ray_address"), field=f"{node}.ray_address", workers=int(cfg[node].workers),
                       workers_field=f"{node}.workers", gpus=cfg.compute.device == "cuda")


def fan_out(cfg, node: str, payloads: list[Any], worker_cls: type, factory: Callable | None, *,
            error: type[InputError], written: Callable[[], int], output: Path) -> Iterator[tuple[int, Any]]:
    """``(index, result)`` of every payload, in order (:func:`ordered_map`), on ``<node>.workers`` actors
    ``worker_cls(worker_config(cfg), factory)``. A Ray failure (an actor dead past its retries) is raised as
    ``error``, one line: ``written()`` groups of this run are in ``output`` and a re-run resumes."""
    import ray.exceptions

    workers = int(cfg[node].workers)
    try:
        yield from ordered_map(payloads, worker_cls, (worker_config(cfg), factory), workers=workers,
                               gpus=cfg.compute.device == "cuda")
    except ray.exceptions.RayError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise error(f"{node}.workers={workers}: a Ray worker failed ({first.strip()}); {written()} groups of this "
                    f"run are in {output}: re-run the same command to resume") from None


def worker_config(cfg) -> dict:
    """The config a Ray worker rebuilds itself from: resolved, with the model folders made absolute
    (a worker does not necessarily run in this process's working directory)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    model = container.get("model") or {}
    for key in ("path", "adapter"):
        if model.get(key):
            model[key] = str(Path(model[key]).expanduser().resolve())
    return container


def ordered_map(chunks: list[Any], worker_cls: type, worker_args: tuple, *, workers: int, gpus: bool,
                max_retries: int = MAX_RETRIES) -> Iterator[tuple[int, Any]]:
    """``(chunk index, result)`` for every chunk, in chunk order, as soon as each is ready.

    ``worker_cls(*worker_args)`` is built once per actor; ``worker.process(payload)`` maps one chunk
    (its JSON-decoded payload) to a JSON-able result.
    """
    import ray.data
    from ray.data import ActorPoolStrategy

    if not chunks:
        return
    rows = [{"index": i, "payload": json.dumps(c, ensure_ascii=False)} for i, c in enumerate(chunks)]
    ds = ray.data.from_items(rows, override_num_blocks=len(rows))  # one block per chunk: streamed one by one
    resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    with warnings.catch_warnings():
        # Ray 2.60 flags every extra keyword as deprecated, yet its docs name this very way to
        # limit actor restarts (ActorPoolMapOperator reads max_restarts / max_task_retries from them)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        mapped = ds.map_batches(
            _Adapter,
            fn_constructor_args=(worker_cls, worker_args),
            batch_size=1,  # a chunk is already one batch of work, made by the caller
            batch_format="pandas",
            compute=ActorPoolStrategy(size=workers),
            max_restarts=max_retries,
            max_task_retries=max_retries,
            **resources,
        )
    ready: dict[int, Any] = {}
    nxt = 0
    for batch in mapped.iter_batches(batch_size=None, batch_format="pandas", prefetch_batches=0):
        for index, result in zip(batch["index"], batch["result"]):
            index = int(index)
            if index < nxt or index in ready:  # a chunk delivered twice (never seen; cheap to be sure)
                log.warning("chunk %d was returned twice by Ray Data; the second copy is ignored", index)
                continue
            ready[index] = json.loads(result)
        while nxt in ready:
            yield nxt, ready.pop(nxt)
            nxt += 1
    if nxt != len(chunks):  # Ray Data returns every block or raises; this is a guard, not a path
        raise RuntimeError(f"Ray Data returned {nxt} of {len(chunks)} chunks")


class _Adapter:
    """The Ray Data callable: a pandas batch of rows (index, payload) -> (index, result)."""

    def __init__(self, worker_cls: type, worker_args: tuple):
        self.worker = worker_cls(*worker_args)

    def __call__(self, batch):
        import pandas as pd

        results = [json.dumps(self.worker.process(json.loads(p)), ensure_ascii=False) for p in batch["payload"]]
        return pd.DataFrame({"index": list(batch["index"]), "result": results})
