"""The generic Spark adapter: any list of annotators as one mapInPandas function.

It groups the task's files by audio seconds (`batch_audio_s`, so one group never holds several hour-long
files at once), opens each file once, decodes it once and runs the annotators each file needs, with the
models of this worker's cached pipeline. The next group is read and decoded in a thread while the
current one is annotated. Results travel back as JSON strings (parsed against the silver
schema in the job), so deeply nested results (segments → words) need no pandas/Arrow struct conversion.

Failures stay per file. Expected ones are results. A file over `file_timeout_s` gets TIMEOUT: a SIGALRM
interrupts Python code, and a watchdog kills the worker when a native call does not return within a
grace period. A file that kills its worker (that watchdog, a segfault, the OOM killer) is found by its
"in progress" marker when Spark retries the task (udfs.markers) and recorded as TIMEOUT or
WORKER_CRASHED after `max_worker_deaths` starts, while the other files of the task are annotated as usual.
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
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd

from annotators.base import FAILED
from annotators.cascade import Cascade
from annotators.decode import DecodeError, DecodeLimits
from annotators.pipeline import Decoded, FileInput, FileOutput, Pipeline, attempt_number
from annotators.registry import register
from schemas.errors import ErrorCode
from udfs.cache import get_pipeline
from udfs.device import task_placement
from udfs.files import open_local_copy
from udfs.headers import sha256_stream
from udfs.markers import Markers
from udfs.storage import StorageSettings

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
    batch_audio_s: float  # audio seconds decoded and annotated together
    marker_dir: str | None  # where "in progress" markers live (None: no poison-file isolation)
    max_worker_deaths: int  # starts of one file that may die with their worker before it is given up
    hard_limit_grace_s: float  # a file still running this long after its limit kills the worker
    plugins: tuple[tuple[str, str], ...]  # extra annotators: (name, "module:Class")
    storage: StorageSettings | None  # object-store settings for the executors' reads
    cascade: Cascade | None = None  # the recipe's cheap checks (annotate.cascade); None: every annotator runs

    def output_columns(self) -> list[str]:
        return ["audio_id", "decode", *self.names, "annotated_by"]


class FileTimeout(BaseException):
    """Raised by SIGALRM. A BaseException, so that no `except Exception` in an annotator or a library
    can swallow it and turn an over-time file into an ordinary failure."""


@contextmanager
def time_limit(seconds: float):
    """SIGALRM-based limit (Python workers run UDFs on their main thread). Native calls finish first."""
    if not seconds or seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise FileTimeout()

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Watchdog:
    """Kills this worker when a batch overruns its limit by the grace period (a native call that SIGALRM
    cannot interrupt). `on_fire` marks the files first, so the retried task records them as TIMEOUT."""

    def __init__(self):
        self._timer: threading.Timer | None = None

    @contextmanager
    def armed(self, seconds: float, on_fire):
        if not seconds or seconds <= 0:
            yield
            return

        def fire():
            log.error("a batch overran its time limit by the grace period; killing this worker")
            on_fire()
            os.kill(os.getpid(), signal.SIGKILL)

        self._timer = threading.Timer(seconds, fire)
        self._timer.daemon = True
        self._timer.start()
        try:
            yield
        finally:
            self._timer.cancel()


def _opener(uri: str, content, storage: StorageSettings | None, audio_id: str):
    if content is not None and not (isinstance(content, float) and math.isnan(content)):
        data = bytes(content)
        return lambda: _checked(_bytes_ctx(data), uri, audio_id)
    return lambda: _checked(open_local_copy(uri, storage), uri, audio_id)


@contextmanager
def _bytes_ctx(data: bytes):
    yield io.BytesIO(data)


@contextmanager
def _checked(opened, uri: str, audio_id: str):
    """The file, once its bytes are checked to still be those ingest hashed into `audio_id` (one
    sequential read; an object was streamed into a local file already). Bytes replaced since ingest are
    not annotated under the old id: CONTENT_CHANGED, and the next ingest sees the file as changed."""
    with opened as f:
        digest = sha256_stream(f)
        if digest != audio_id:
            raise DecodeError(ErrorCode.CONTENT_CHANGED,
                              f"{uri} no longer holds the bytes ingested as this audio (sha256 {digest[:12]}... "
                              "now): the next ingest picks up the new bytes")
        f.seek(0)
        yield f


def _inputs(batch: pd.DataFrame, storage: StorageSettings | None) -> list[tuple[FileInput, float]]:
    out = []
    for rec in batch.to_dict("records"):
        current = json.loads(rec["current"]) if rec.get("current") else {}
        duration = rec.get("duration_s")
        out.append((FileInput(
            audio_id=rec["audio_id"],
            open=_opener(rec["uri"], rec.get("content"), storage, rec["audio_id"]),
            meta={"reference_text": rec.get("reference_text"), "language_hint": rec.get("language_hint"),
                  "uri": rec["uri"]},
            only=set(rec["need"]),
            upstream={k: v for k, v in current.items() if v is not None},
            inputs_hash=json.loads(rec["inputs"]) if rec.get("inputs") else {},
        ), 0.0 if duration is None or pd.isna(duration) else float(duration)))
    return out


def groups_by_audio_seconds(items: list[tuple[FileInput, float]], budget_s: float
                            ) -> list[tuple[list[FileInput], float]]:
    """Consecutive groups whose audio adds up to at most budget_s (a longer file goes alone), each with
    its audio seconds."""
    out, group, total = [], [], 0.0
    for inp, seconds in items:
        if group and total + seconds > budget_s:
            out.append((group, total))
            group, total = [], 0.0
        group.append(inp)
        total += seconds
    if group:
        out.append((group, total))
    return out


def failed_output(pipeline: Pipeline, inp: FileInput, code: ErrorCode, message: str) -> FileOutput:
    """Every annotator the file needed, failed with `code` (and its attempt count)."""
    results = {}
    for a in pipeline.annotators:
        if inp.only is None or a.name in inp.only:
            result = a.result(FAILED, code, message)
            result["attempt"] = attempt_number(a, result, inp.upstream.get(a.name))
            if a.meta_inputs:
                result["inputs_hash"] = inp.inputs_hash.get(a.name)
            results[a.name] = result
    return FileOutput(inp.audio_id, {"status": FAILED, "error_code": str(code), "error_message": message}, results)


def _run_files(pipeline: Pipeline, inputs: list[FileInput], timeout_s: float, decoded: Decoded | None = None,
               hard_limit=None, cascade: Cascade | None = None) -> list[FileOutput]:
    """Run the batch under timeout_s per file; on a timeout, run its files one by one under their own.
    `hard_limit(files)`: a context that arms the watchdog for those files (a fresh budget for the batch
    and for each file re-run alone)."""
    armed = hard_limit or (lambda files: _nothing())
    try:
        with armed(inputs), time_limit(timeout_s * len(inputs)):
            return pipeline.run(inputs, decoded, cascade)
    except FileTimeout:
        if len(inputs) > 1:
            return [out for inp in inputs
                    for out in _run_files(pipeline, [inp], timeout_s, None, hard_limit, cascade)]
    msg = f"over the per-file limit of {timeout_s:g} s (annotate.file_timeout_s)"
    return [failed_output(pipeline, inputs[0], ErrorCode.TIMEOUT, msg)]


@contextmanager
def _nothing():
    yield


@dataclass
class Unit:
    """What the worker does next: a group of files to annotate, or outputs already known (files given up)."""

    group: list[FileInput] | None = None
    ready: list[FileOutput] | None = None
    suspect: bool = False  # in progress when a worker died: runs alone, with nothing decoded beside it
    long: bool = False  # one file over batch_audio_s: decoded when its turn comes, not beside another group


def plan_units(batches: Iterator[pd.DataFrame], spec: AnnotateSpec, pipeline: Pipeline,
               markers: Markers) -> Iterator[Unit]:
    """The task's files as units, batch after batch (lazily: a batch is read when the one before is
    planned). A file found "in progress" from a worker that died goes alone; one that took its worker down
    `max_worker_deaths` times while alone is given up (TIMEOUT or WORKER_CRASHED), and its marker stays so
    that a later attempt gives it up at once."""
    for batch in batches:
        if batch.empty:
            continue
        fresh = []
        for inp, seconds in _inputs(batch, spec.storage):
            marker = markers.read(inp.audio_id)
            if marker is None:
                fresh.append((inp, seconds))
            elif marker.get("alone", 0) >= spec.max_worker_deaths:  # it took its worker down alone, every time
                code = ErrorCode.TIMEOUT if marker.get("reason") == "timeout" else ErrorCode.WORKER_CRASHED
                msg = (f"the worker died {marker['alone']} times with this file alone in progress "
                       f"({'killed over the time limit' if code == ErrorCode.TIMEOUT else 'crashed or killed'})")
                if not marker.get("given_up"):
                    log.warning("giving up on %s: %s", inp.audio_id, msg)
                    markers.write(inp.audio_id, {**marker, "given_up": True})
                yield Unit(ready=[failed_output(pipeline, inp, code, msg)])
            else:  # in progress when a worker died: alone this time
                yield Unit(group=[inp], suspect=True)
        for group, seconds in groups_by_audio_seconds(fresh, spec.batch_audio_s):
            yield Unit(group=group, long=seconds > spec.batch_audio_s)


def make_annotate_fn(spec: AnnotateSpec):
    def annotate_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for name, target in spec.plugins:
            register(name, target)
        placement = task_placement(spec.gpu_fallback)
        loaded = get_pipeline(spec.names, spec.params, spec.limits, spec.strict,
                              placement.device, placement.index, placement.threads)
        pipeline = loaded.pipeline
        markers = Markers(spec.marker_dir, storage=spec.storage)
        watchdog = Watchdog()
        host = socket.gethostname()
        prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxlake-decode")

        inline = []  # set once a prefetch hung: the rest of the task decodes in the main thread

        def start(group: list[FileInput], ahead: bool = True, alone: bool = False) -> Future | None:
            """Mark the group in progress (`alone`: nothing else is), then read and decode it in the
            prefetch thread. Marked first: a decoder that kills the worker during prefetch is then found
            like any other poison file."""
            for inp in group:
                markers.start(inp.audio_id, alone=alone)
            return prefetch.submit(pipeline.decode_many, group) if ahead and not inline else None

        def collect(group: list[FileInput], decoding: Future | None) -> Decoded | None:
            """The prefetched files, waited for under the group's time limit; None: decode inline (under
            SIGALRM, so that a file whose read or decode hangs ends as TIMEOUT on its own)."""
            if decoding is None:
                return None
            try:
                with time_limit(spec.file_timeout_s * len(group)):
                    return decoding.result()
            except FileTimeout:
                log.warning("decoding ahead did not finish within the group's time limit; decoding in the "
                            "main thread from now on")
                inline.append(True)
                return None

        def hard_limit(files: list[FileInput]):
            """The watchdog for `files` running now: their time limit plus the grace, armed afresh for the
            batch and for each file re-run alone after a batch timeout. When it fires, those files are
            marked as killed over the limit."""
            def mark_timeout():
                for inp in files:
                    marker = markers.read(inp.audio_id) or {"starts": 1, "alone": int(len(files) == 1)}
                    markers.write(inp.audio_id, {**marker, "reason": "timeout"})

            seconds = spec.file_timeout_s * len(files) + spec.hard_limit_grace_s if spec.file_timeout_s else 0
            return watchdog.armed(seconds, mark_timeout)

        def run_group(group: list[FileInput], decoding: Future | None) -> list[FileOutput]:
            try:
                decoded = collect(group, decoding)
                return _run_files(pipeline, group, spec.file_timeout_s, decoded, hard_limit, spec.cascade)
            finally:  # the worker is alive: an exception here (strict mode) is not a poison file
                for inp in group:
                    markers.done(inp.audio_id)

        def frame(outputs: list[FileOutput], before: dict) -> pd.DataFrame:
            seconds = {k: round(v - before.get(k, 0.0), 4) for k, v in pipeline.seconds.items()}
            by = json.dumps({
                "run_id": spec.run_id, "host": host, "pid": os.getpid(), "load_id": loaded.load_id,
                "device": placement.device, "gpu_address": placement.gpu_address,
                "device_note": placement.note, "threads": placement.threads,
                # the group's stage seconds, shared out evenly (per-file timing would cost a sync each)
                "seconds": {k: v / len(outputs) for k, v in seconds.items()},
            })
            rows = []
            for out in outputs:
                row = {"audio_id": out.audio_id, "decode": json.dumps(out.decode), "annotated_by": by}
                for name in spec.names:
                    result = out.results.get(name)
                    row[name] = json.dumps(result, default=_json_default) if result is not None else None
                rows.append(row)
            return pd.DataFrame(rows, columns=spec.output_columns())

        # One group is decoded ahead while the one before it is annotated: reads (object stores) and
        # decoding hide behind the models. At most two groups' audio is in memory, and a file longer
        # than a group's budget is decoded in its turn. A suspect file never
        # overlaps another: were it to kill the worker again, no innocent file may be marked with it.
        def run_now(group: list[FileInput]) -> pd.DataFrame:  # decoded inline, under SIGALRM
            before = dict(pipeline.seconds)
            return frame(run_group(group, start(group, ahead=False, alone=True)), before)

        try:
            current: list[FileInput] | None = None
            decoding: Future | None = None  # the current group's prefetch
            for unit in plan_units(batches, spec, pipeline, markers):
                if unit.ready is not None:
                    yield frame(unit.ready, dict(pipeline.seconds))
                    continue
                if unit.suspect:
                    if current is not None:
                        before = dict(pipeline.seconds)
                        yield frame(run_group(current, decoding), before)
                        current = None
                    yield run_now(unit.group)
                    continue
                # a long file is not decoded ahead: its signal would sit in memory beside the
                # current group's (two 3-hour files: 1.3 GB of audio), for a decode of seconds
                upcoming = (unit.group, start(unit.group, ahead=not unit.long))
                if current is not None:
                    before = dict(pipeline.seconds)
                    yield frame(run_group(current, decoding), before)
                current, decoding = upcoming
            if current is not None:
                before = dict(pipeline.seconds)
                yield frame(run_group(current, decoding), before)
        finally:
            prefetch.shutdown(wait=False, cancel_futures=True)  # a hung read must not hold the task

    return annotate_batches


def _json_default(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
