"""The generic Spark adapter: any list of annotators as one mapInPandas function.

Per Arrow batch (a handful of files, set by spark.sql.execution.arrow.maxRecordsPerBatch) it opens each
file once, decodes it once and runs the annotators each file needs, with the models of this worker's
cached pipeline. Results travel back as JSON strings (parsed against the silver schema in the job), so
deeply nested results (segments → words) need no pandas/Arrow struct conversion. Expected failures are
results; a file over the time limit gets TIMEOUT; only a programming error (with strict) fails a task.
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd

from annotators.base import FAILED
from annotators.decode import DecodeLimits
from annotators.pipeline import FileInput, FileOutput, Pipeline
from schemas.errors import ErrorCode
from udfs.cache import get_pipeline
from udfs.device import task_placement
from udfs.files import open_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotateSpec:
    """Everything the executors need, as plain picklable data (config flows in explicitly)."""

    names: tuple[str, ...]
    params: dict
    limits: DecodeLimits
    strict: bool
    gpu_fallback: str
    file_timeout_s: float
    run_id: str

    def output_columns(self) -> list[str]:
        return ["audio_id", "decode", *self.names, "annotated_by"]


class _Timeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """SIGALRM-based limit (Python workers run UDFs on their main thread). Native calls finish first."""
    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _opener(uri: str, content):
    if content is not None and not (isinstance(content, float) and math.isnan(content)):
        data = bytes(content)
        return lambda: _bytes_ctx(data)
    return lambda: open_uri(uri)


@contextmanager
def _bytes_ctx(data: bytes):
    yield io.BytesIO(data)


def _inputs(batch: pd.DataFrame) -> list[FileInput]:
    out = []
    for rec in batch.to_dict("records"):
        current = json.loads(rec["current"]) if rec.get("current") else {}
        out.append(FileInput(
            audio_id=rec["audio_id"],
            open=_opener(rec["uri"], rec.get("content")),
            meta={"reference_text": rec.get("reference_text"), "language_hint": rec.get("language_hint"),
                  "uri": rec["uri"]},
            only=set(rec["need"]),
            upstream={k: v for k, v in current.items() if v is not None},
            inputs_hash=json.loads(rec["inputs"]) if rec.get("inputs") else {},
        ))
    return out


def _run_files(pipeline: Pipeline, inputs: list[FileInput], timeout_s: float) -> list[FileOutput]:
    """Run the batch under a limit of timeout_s per file; on timeout, isolate the slow file(s)."""
    try:
        with time_limit(timeout_s * len(inputs)):
            return pipeline.run(inputs)
    except _Timeout:
        if len(inputs) > 1:
            return [out for inp in inputs for out in _run_files(pipeline, [inp], timeout_s)]
    inp = inputs[0]
    msg = f"over the per-file limit of {timeout_s:.0f} s (annotate.file_timeout_s)"
    results = {a.name: a.result(FAILED, ErrorCode.TIMEOUT, msg) for a in pipeline.annotators
               if inp.only is None or a.name in inp.only}
    return [FileOutput(inp.audio_id, {"status": FAILED, "error_code": str(ErrorCode.TIMEOUT),
                                      "error_message": msg}, results)]


def make_annotate_fn(spec: AnnotateSpec):
    def annotate_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        placement = task_placement(spec.gpu_fallback)
        loaded = get_pipeline(spec.names, spec.params, spec.limits, spec.strict,
                              placement.device, placement.index, placement.threads)
        pipeline = loaded.pipeline
        host = socket.gethostname()
        for batch in batches:
            if batch.empty:
                continue
            before = dict(pipeline.seconds)
            outputs = _run_files(pipeline, _inputs(batch), spec.file_timeout_s)
            seconds = {k: round(v - before.get(k, 0.0), 4) for k, v in pipeline.seconds.items()}
            by = json.dumps({
                "run_id": spec.run_id, "host": host, "pid": os.getpid(), "load_id": loaded.load_id,
                "device": placement.device, "gpu_address": placement.gpu_address,
                "device_note": placement.note, "threads": placement.threads,
                # the batch's stage seconds, shared out evenly (per-file timing would cost a sync each)
                "seconds": {k: v / len(outputs) for k, v in seconds.items()},
            })
            rows = []
            for out in outputs:
                row = {"audio_id": out.audio_id, "decode": json.dumps(out.decode), "annotated_by": by}
                for name in spec.names:
                    result = out.results.get(name)
                    row[name] = json.dumps(result, default=_json_default) if result is not None else None
                rows.append(row)
            yield pd.DataFrame(rows, columns=spec.output_columns())

    return annotate_batches


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
