"""The per-worker model cache. It must live in an importable module (not the driver script): a cache
defined in the driver would be pickled by value with the UDF and the models reloaded on every task.
With spark.python.worker.reuse=true (the default) a worker keeps its pipeline across batches, tasks
and actions; `load_id` makes each load observable in the output (tests count them)."""
from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass

from annotators.decode import DecodeLimits
from annotators.pipeline import Pipeline
from annotators.registry import build

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    pipeline: Pipeline
    load_id: str


_PIPELINES: dict[tuple, Loaded] = {}


def get_pipeline(names: tuple[str, ...], params: dict, limits: DecodeLimits, strict: bool,
                 device: str, device_index: int, threads: int) -> Loaded:
    annotators = build(list(names), params)
    key = (tuple((a.name, a.version, a.params_hash) for a in annotators), limits, strict, device, device_index,
           threads)
    loaded = _PIPELINES.get(key)
    if loaded is None:
        _set_threads(threads)
        pipeline = Pipeline(annotators, limits, strict)
        pipeline.setup(device=device, device_index=device_index, threads=threads)
        loaded = Loaded(pipeline, f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
        _PIPELINES[key] = loaded
        log.info("worker %d loaded annotators %s on %s (%d threads)", os.getpid(), list(names), device, threads)
    return loaded


def _set_threads(threads: int) -> None:
    """One knob (spark.task.cpus) sets every library's threads, so tasks never oversubscribe cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
