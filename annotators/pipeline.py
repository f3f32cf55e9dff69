"""Decode once, annotate many: runs a list of annotators over a batch of files, pure Python.

The Spark adapter (udfs/) calls this per Arrow batch; tests and benchmarks call it directly. Each file
is decoded once; each annotator sees the files that decoded, with the results of the annotators before
it. On a task with a GPU the annotators set up on it run in a lane beside the CPU's (`Pipeline.lanes`).
Failures stay per file and per annotator: a decode error marks every annotator of that file
`failed` with the decode's code, an AnnotationError marks one result, and an unexpected exception
in a batch is retried file by file so that one bad input cannot take the others with it.
With a cascade (annotators.cascade), the cheap annotators run first, then the expensive ones only on the
files that the cheap results do not already rule out (the others get a GATED result each).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from annotators.base import FAILED, SKIPPED, AnnotationError, Annotator, AudioItem
from annotators.cascade import Cascade, gated_params_hash
from annotators.decode import DecodeError, DecodeLimits, decode
from annotators.registry import dependency_closure
from schemas.errors import ErrorCode

log = logging.getLogger(__name__)

LANE_POLL_S = 0.05  # how often a lane waiting for another's result looks up


@dataclass
class FileInput:
    audio_id: str
    open: Callable[[], Any]  # returns a context manager yielding a seekable binary file
    meta: dict = field(default_factory=dict)
    only: set[str] | None = None  # annotators to run for this file (None: all of the pipeline's)
    upstream: dict[str, dict] = field(default_factory=dict)  # current results of the others, as inputs
    inputs_hash: dict[str, str] = field(default_factory=dict)  # annotator -> hash of its meta_inputs


@dataclass
class Decoded:
    """Decoded files, in input order: (audio or None, decode info) each, and the seconds it took."""

    files: list[tuple[AudioItem | None, dict]]
    seconds: float


@dataclass
class FileOutput:
    audio_id: str
    decode: dict
    results: dict[str, dict]


def attempt_number(a: Annotator, result: dict, previous: dict | None) -> int | None:
    """1 for a first failure, previous + 1 when the same annotator version and params failed again with
    the same code; None for a success or a skip (nothing to retry)."""
    if result.get("status") != FAILED:
        return None
    if previous and previous.get("status") == FAILED and previous.get("error_code") == result.get("error_code") \
            and previous.get("version") == a.version and previous.get("params_hash") == a.params_hash:
        return int(previous.get("attempt") or 1) + 1
    return 1


class Pipeline:
    def __init__(self, annotators: list[Annotator], limits: DecodeLimits = DecodeLimits(), strict: bool = False):
        self.annotators = annotators
        self.limits = limits
        self.strict = strict  # re-raise unexpected exceptions instead of recording MODEL_ERROR
        self.seconds: dict[str, float] = {"decode": 0.0, **{a.name: 0.0 for a in annotators}}

    def setup(self, device: str = "cpu", device_index: int = 0, threads: int = 1) -> None:
        for a in self.annotators:
            a.ensure_setup(device="cuda" if device == "cuda" and a.resources.gpu else "cpu",
                           device_index=device_index, threads=threads)

    def decode_one(self, item: FileInput) -> tuple[AudioItem | None, dict]:
        """Open and decode one file (no shared state touched: safe in a prefetch thread)."""
        try:
            with item.open() as f:
                d = decode(f, self.limits)
        except DecodeError as exc:
            return None, {"status": FAILED, "error_code": str(exc.code), "error_message": str(exc)}
        except FileNotFoundError as exc:
            return None, {"status": FAILED, "error_code": str(ErrorCode.NOT_FOUND), "error_message": str(exc)}
        except OSError as exc:
            return None, {"status": FAILED, "error_code": str(ErrorCode.READ_FAILED),
                          "error_message": f"{type(exc).__name__}: {exc}"}
        audio = AudioItem(item.audio_id, d.samples, 16000, d.native, d.native_rate, dict(item.meta))
        info = {"status": "ok", "error_code": None, "error_message": None, "decoder": d.decoder,
                "duration_s": d.duration_s, "native_rate": d.native_rate, "channels": d.channels}
        return audio, info

    def decode_many(self, inputs: list[FileInput]) -> Decoded:
        """Decode files (possibly in a prefetch thread while the caller annotates others)."""
        start = time.perf_counter()
        files = [self.decode_one(i) for i in inputs]
        return Decoded(files, time.perf_counter() - start)

    def run(self, inputs: list[FileInput], decoded: Decoded | None = None,
            cascade: Cascade | None = None) -> list[FileOutput]:
        """Decode each file once (unless `decoded` already holds them), then run each annotator over the
        files that need it: in pipeline order, or in lanes side by side (see `lanes`). With `cascade`, the
        cheap annotators first (`screen`), then the rest, the expensive ones only on the files kept."""
        decoded = decoded or self.decode_many(inputs)
        self.seconds["decode"] += decoded.seconds
        files = decoded.files
        outputs = [FileOutput(i.audio_id, info, {}) for i, (_, info) in zip(inputs, files, strict=True)]
        for inp, (audio, _) in zip(inputs, files, strict=True):
            if audio is not None:
                audio.upstream.update(inp.upstream)
        rest, gated = list(self.annotators), {}
        if cascade is not None:
            first, rest = self.screen()
            for a in first:
                self._step(a, inputs, files, outputs)
            gated = {k: why for k, (audio, _) in enumerate(files) if audio is not None
                     and (why := cascade.reason(audio))}
        lanes = self.lanes(rest)
        if len(lanes) == 1:
            for a in lanes[0]:
                self._step(a, inputs, files, outputs, gated, cascade)
        else:
            self._run_lanes(lanes, inputs, files, outputs, gated, cascade)
        return outputs

    def screen(self) -> tuple[list[Annotator], list[Annotator]]:
        """(the cheap annotators that read no expensive one, every other), each in pipeline order: what
        runs before the cascade decides, and what after. Neither reads the other's later results, so
        each annotator computes what it computes in pipeline order."""
        closure = dependency_closure(self.annotators)
        expensive = {a.name for a in self.annotators if a.expensive}
        first = [a for a in self.annotators if not a.expensive and not closure[a.name] & expensive]
        return first, [a for a in self.annotators if a not in first]

    def lanes(self, annotators: list[Annotator] | None = None) -> list[list[Annotator]]:
        """Sequences of annotators that run side by side. On a task with a GPU, the annotators set up on it
        are a lane of their own beside the host's (CPU) annotators, so that neither waits for the other
        except where one reads the other's results. The host lane runs first what the device lane reads
        (vad before asr), last what reads the device's results (text after asr). Otherwise (a CPU task,
        or everything on the device) one lane in pipeline order, as the annotators share the task's
        cores. `annotators`: a part of the pipeline (in its order), by default all of it."""
        annotators = self.annotators if annotators is None else annotators
        device = [a for a in annotators if a.device == "cuda"]
        if not device or len(device) == len(annotators):
            return [list(annotators)]
        closure = dependency_closure(self.annotators)
        on_device = {a.name for a in device}
        feeds = set().union(*(closure[a.name] for a in device))
        # a stable sort keeps the dependency order: what the device lane reads cannot read the device's
        # results (that would be a cycle), and neither can what is independent of both
        host = sorted((a for a in annotators if a.name not in on_device),
                      key=lambda a: 0 if a.name in feeds else 2 if closure[a.name] & on_device else 1)
        return [host, device]

    def _run_lanes(self, lanes: list[list[Annotator]], inputs: list[FileInput], files, outputs,
                   gated: dict[int, str], cascade: Cascade | None) -> None:
        """The host lane in this thread (where SIGALRM's time limit acts), the device lane in another. An
        annotator starts once the annotators it reads from have finished. Whatever ends a lane early (an
        exception, the time limit) stops the other after its current annotator, and is raised here."""
        # only the lanes' annotators are waited for (those the cascade ran first have finished)
        finished = {a.name: threading.Event() for lane in lanes for a in lane}
        stop = threading.Event()
        failures: list[BaseException] = []

        def run_lane(lane: list[Annotator]) -> None:
            for a in lane:
                for dep in (*a.requires, *a.uses):
                    # polled, so that this thread stays responsive to the time limit and to `stop`
                    while dep in finished and not finished[dep].wait(LANE_POLL_S):
                        if stop.is_set():
                            return
                if stop.is_set():
                    return
                self._step(a, inputs, files, outputs, gated, cascade)
                finished[a.name].set()

        def device_lane() -> None:
            try:
                run_lane(lanes[1])
            except BaseException as exc:  # re-raised in the calling thread
                failures.append(exc)
                stop.set()

        helper = threading.Thread(target=device_lane, name="voxlake-device-lane", daemon=True)
        helper.start()
        try:
            run_lane(lanes[0])
            while helper.is_alive():
                helper.join(LANE_POLL_S)
        except BaseException:
            stop.set()
            helper.join()  # never two calls into one annotator: the next attempt waits for this one
            raise
        if failures:
            raise failures[0]

    def _step(self, a: Annotator, inputs: list[FileInput], files, outputs: list[FileOutput],
              gated: dict[int, str] | None = None, cascade: Cascade | None = None) -> None:
        """Run one annotator over the files that need it; record its results (and what failed to decode,
        and, for an expensive annotator, which files the cascade gated)."""
        gated = (gated or {}) if a.expensive else {}
        wanted = [k for k, inp in enumerate(inputs) if inp.only is None or a.name in inp.only]
        live = [k for k in wanted if files[k][0] is not None and k not in gated]
        for k in wanted:
            audio, info = files[k]
            if audio is None:
                outputs[k].results[a.name] = a.result(FAILED, info["error_code"], info["error_message"])
            elif k in gated:
                result = a.result(SKIPPED, ErrorCode.GATED, gated[k])
                result["params_hash"] = gated_params_hash(a.params_hash, cascade)
                outputs[k].results[a.name] = audio.upstream[a.name] = result
        start = time.perf_counter()
        results = self._annotate(a, [files[k][0] for k in live])
        self.seconds[a.name] += time.perf_counter() - start
        for k, result in zip(live, results, strict=True):
            outputs[k].results[a.name] = result
            files[k][0].upstream[a.name] = result
        for k in wanted:
            result = outputs[k].results[a.name]
            if a.meta_inputs:  # record which metadata the result was computed from
                result["inputs_hash"] = inputs[k].inputs_hash.get(a.name)
            result["attempt"] = attempt_number(a, result, inputs[k].upstream.get(a.name))

    def _annotate(self, a: Annotator, items: list[AudioItem]) -> list[dict]:
        if not items:
            return []
        try:
            results = a.annotate_batch(items)
        except AnnotationError as exc:
            results = [a.result(FAILED, exc.code, str(exc)) for _ in items]
        except Exception:
            if self.strict:
                raise
            log.exception("%s failed on a batch of %d; retrying file by file", a.name, len(items))
            results = [self._one(a, item) for item in items]
        if len(results) != len(items):
            raise RuntimeError(f"{a.name} returned {len(results)} results for {len(items)} inputs")
        return [a.check(r) for r in results]

    def _one(self, a: Annotator, item: AudioItem) -> dict:
        try:
            out = a.annotate_batch([item])[0]
        except AnnotationError as exc:
            return a.result(FAILED, exc.code, str(exc))
        except Exception as exc:
            if self.strict:
                raise
            log.exception("%s failed on %s", a.name, item.audio_id)
            return a.result(FAILED, ErrorCode.MODEL_ERROR, f"{type(exc).__name__}: {exc}"[:500])
        return out
