"""Which device a Spark task runs its models on: the GPU Spark assigned to it, else the CPU.

Spark's resource-aware scheduling hands each task the addresses of its GPUs (TaskContext.resources()).
The driver never touches CUDA: this runs in the executors' Python workers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu" | "cuda"
    index: int
    gpu_address: str | None  # what Spark assigned (None: no GPU resource for this task)
    threads: int
    note: str | None = None


def cuda_device_count() -> int:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # no CUDA runtime at all
        return 0


def task_placement(gpu_fallback: str = "cpu") -> Placement:
    """Read the task's cpus and GPU addresses; decide the device. gpu_fallback: 'cpu' or 'fail'."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    threads = max(1, int(ctx.cpus())) if ctx is not None else 1
    resources = ctx.resources() if ctx is not None else {}
    gpu = resources.get("gpu")
    if gpu is None or not gpu.addresses:
        return Placement("cpu", 0, None, threads)
    address = gpu.addresses[0]
    index = int(address)
    visible = cuda_device_count()
    if index < visible:
        return Placement("cuda", index, address, threads)
    note = (f"Spark assigned GPU address {address} to this task, but CUDA sees {visible} device(s) here "
            "(no driver, or CUDA_VISIBLE_DEVICES hides it)")
    if gpu_fallback == "cpu":
        log.warning("%s; running on CPU (annotate.gpu_fallback: cpu)", note)
        return Placement("cpu", 0, address, threads, note + "; fell back to CPU")
    raise RuntimeError(f"{note}. Fix the executors' CUDA setup, or set annotate.gpu_fallback: cpu to run on CPU.")
