"""What every annotator is: a name, a version, an output schema, declared resources, and a batch method.

Annotators know nothing of Spark. They receive decoded audio (`AudioItem`, decoded once per file by
`annotators.decode`) plus what upstream annotators already produced, and return one result per input,
in order. A result is a plain dict: the common fields (`status`, `error_code`, `error_message`,
`version`, `params_hash`) and the annotator's own fields, with None (never a sentinel) where unknown.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from schemas.errors import ErrorCode

OK, SKIPPED, FAILED = "ok", "skipped", "failed"

# How many runs in a row computed this result and failed with it (1 after a first failure): a transient
# failure is retried on the next run only while this stays under annotate.max_attempts.
ATTEMPT_FIELD = pa.field("attempt", pa.int32())

# One scored model window of a file (quality's DNSMOS, distillmos): where it starts and its score.
WINDOW_SCORE = pa.struct([pa.field("start_s", pa.float64()), pa.field("score", pa.float64())])

COMMON_FIELDS = [
    pa.field("status", pa.string()),
    pa.field("error_code", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("version", pa.string()),
    pa.field("params_hash", pa.string()),
]


class AnnotationError(Exception):
    """An expected, per-input failure: becomes `status=failed` with this error code, not a crash."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


class SkipAnnotation(AnnotationError):
    """Nothing to annotate (e.g. ASR on a file without speech): becomes `status=skipped` with the code."""


@dataclass(frozen=True)
class Resources:
    cpu_threads: int = 1
    gpu: bool = False  # can use a GPU when the task was given one


@dataclass
class AudioItem:
    """One decoded file and what is known about it. `samples` is 16 kHz mono float32."""

    audio_id: str
    samples: np.ndarray
    sample_rate: int
    native: np.ndarray | None = None  # (frames, channels) float32 at native_rate, for level/bandwidth
    native_rate: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # reference_text, language_hint, ...
    upstream: dict[str, dict] = field(default_factory=dict)  # results of annotators already run

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


def params_hash(params: dict) -> str:
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


class Annotator:
    """Base class. Subclasses set the ClassVars and implement `annotate_batch` (and `setup` if they load)."""

    name: ClassVar[str]
    version: ClassVar[str]
    fields: ClassVar[list[pa.Field]]
    default_params: ClassVar[dict] = {}
    requires: ClassVar[tuple[str, ...]] = ()  # annotators whose results this one reads (item.upstream)
    uses: ClassVar[tuple[str, ...]] = ()  # optional inputs: read when configured, ordered before this one
    # File metadata (manifest fields) the results depend on: their hash is kept in `inputs_hash`, so an
    # edited manifest field recomputes exactly the annotators that read it.
    meta_inputs: ClassVar[tuple[str, ...]] = ()
    resources: ClassVar[Resources] = Resources()
    # The cascade (annotators.cascade): an expensive annotator runs only on audio that can still pass the
    # recipe after the cheap ones have run; on the rest its result is `skipped` with code GATED. A cheap
    # one runs on every file (new annotators, plugins included, are cheap unless they say otherwise).
    expensive: ClassVar[bool] = False

    def __init__(self, params: dict | None = None):
        unknown = set(params or {}) - set(self.default_params)
        if unknown:
            raise ValueError(f"{self.name}: unknown params {sorted(unknown)}; known: {sorted(self.default_params)}")
        self.params = {**self.default_params, **(params or {})}
        self.params_hash = params_hash(self.params)
        self.device = "cpu"
        self.device_index = 0
        self.threads = 1
        self._ready = False

    @classmethod
    def output_schema(cls) -> pa.StructType:
        extra = [pa.field("inputs_hash", pa.string())] if cls.meta_inputs else []
        # appended, so tables written before these fields existed gain them last
        return pa.struct(COMMON_FIELDS + list(cls.fields) + extra + [ATTEMPT_FIELD])

    def setup(self, device: str = "cpu", device_index: int = 0, threads: int = 1) -> None:
        """Load models. Called once per process (the Spark adapter caches the instance per worker)."""
        self.device, self.device_index, self.threads = device, device_index, threads
        self._ready = True

    def ensure_setup(self, **kwargs) -> None:
        if not self._ready:
            self.setup(**kwargs)

    def annotate_batch(self, items: list[AudioItem]) -> list[dict]:
        """One result per item, in order. Default: `annotate` item by item."""
        return [self.run_one(item) for item in items]

    def annotate(self, item: AudioItem) -> dict:
        raise NotImplementedError

    # ---- result helpers
    def run_one(self, item: AudioItem) -> dict:
        """`annotate` one item, turning AnnotationError and unmet dependencies into results."""
        for dep in self.requires:
            up = item.upstream.get(dep)
            if up is None or up.get("status") != OK:
                # a skipped dependency passes its reason on (NO_SPEECH stays NO_SPEECH)
                code = up.get("error_code") if up and up.get("status") == SKIPPED else None
                return self.result(SKIPPED, code or ErrorCode.DEPENDENCY_FAILED,
                                   f"needs '{dep}', which did not succeed")
        try:
            return self.ok(**self.annotate(item))
        except SkipAnnotation as exc:
            return self.result(SKIPPED, exc.code, str(exc))
        except AnnotationError as exc:
            return self.result(FAILED, exc.code, str(exc))

    def ok(self, **values) -> dict:
        out = self.result(OK)
        out.update(values)
        return out

    def result(self, status: str, code: ErrorCode | str | None = None, message: str | None = None) -> dict:
        out = {f.name: None for f in self.output_schema()}
        out.update(
            status=status,
            error_code=str(code) if code is not None else None,
            error_message=message,
            version=self.version,
            params_hash=self.params_hash,
        )
        return out

    def check(self, result: dict) -> dict:
        """Validate a result against the output schema (raises on a programming error, not bad audio)."""
        pa.array([result], type=self.output_schema())
        return result


def db(value: float, floor: float = 1e-20) -> float | None:
    """Power ratio in dB; None for zero (digital silence has no finite level)."""
    return None if value <= floor else float(10 * np.log10(value))
