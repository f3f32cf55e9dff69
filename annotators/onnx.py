"""onnxruntime settings shared by the annotators that run ONNX models (quality, events, distillmos, speakers)."""
from __future__ import annotations


def session_options(threads: int):
    """One intra-op pool of the worker's share of cores and no memory arena: Spark runs several Python
    workers per machine, and an arena would keep the largest working memory any call of the worker's
    life needed instead of giving it back."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.enable_cpu_mem_arena = False
    return opts
