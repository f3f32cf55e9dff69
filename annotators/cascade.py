"""The cascade: the expensive annotators run only on audio that can still be curated.

The cheap annotators (`Annotator.expensive = False`: levels, vad, snr, bandwidth, events, fingerprint) run on
every file first. Then each file is checked against the recipe's floors and ceilings that those results
already decide (`Check`): the file suite's (bandwidth) on every file, and the clip suite's (clip length,
speech ratio, SNR, clipping, music) where the file is judged as one clip, the whole file, because it is no
longer than the clips' `max_s` (annotators.clips gives that clip the file's own values). A file that fails
one of them fails the gate whatever the expensive annotators would say, so they do not run on it: each
records `skipped` with code GATED and a message naming the check, and the gate (expectations/) treats the
missing values as not needed rather than unknown. The checks come from the same suite files and recipe
the gate reads (jobs.stages.recipe builds them); this module knows nothing of suites or Spark.

The cascade skips work and never changes what the expensive annotators compute for the files they run on
(they see the same decoded audio and upstream results), so what is curated is the same with it and
without. A gated result carries `gated_params_hash`: a changed check (a loosened recipe) or the cascade
turned off makes the next run select the gated files again, and compute what is now needed.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from annotators.base import OK, AudioItem

DURATION = "duration_s"  # a check on the decoded duration itself (no annotator)


@dataclass(frozen=True)
class Check:
    """One recipe bound that a cheap result decides: `name` is the suite expectation's."""

    name: str
    annotator: str | None  # whose result holds the value; None: the audio's duration
    field: str
    min_value: float | None = None
    max_value: float | None = None
    whole_file_only: bool = False  # a clip-suite check: decides only a file that is one clip

    def failure(self, item: AudioItem) -> str | None:
        """Why `item` fails this check ("<name>: <field> <value> < <min>"), or None when it passes or the
        value is unknown (an unknown value gates nothing: the expensive annotators run as without the
        cascade)."""
        if self.annotator is None:
            value = item.duration_s
        else:
            result = item.upstream.get(self.annotator)
            if not result or result.get("status") != OK:
                return None
            value = result.get(self.field)
        if value is None:
            return None
        if self.min_value is not None and value < self.min_value:
            return f"{self.name}: {self.field} {value:.4g} < {self.min_value:g}"
        if self.max_value is not None and value > self.max_value:
            return f"{self.name}: {self.field} {value:.4g} > {self.max_value:g}"
        return None


@dataclass(frozen=True)
class Cascade:
    checks: tuple[Check, ...]
    whole_file_max_s: float  # a file no longer than this is one clip (the clips' max_s)

    @property
    def digest(self) -> str:
        """What a gating decision was made under (in each gated result's params_hash)."""
        blob = json.dumps({"checks": [asdict(c) for c in self.checks], "whole": self.whole_file_max_s},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def reason(self, item: AudioItem) -> str | None:
        """The first check `item` fails, as a message starting with the check's name; None: keep it."""
        whole = item.duration_s <= self.whole_file_max_s
        for check in self.checks:
            if check.whole_file_only and not whole:
                continue
            why = check.failure(item)
            if why:
                return why
        return None


def gated_check(message: str | None) -> str | None:
    """The check's name in a GATED result's message (publish reads it with the same rule in Spark)."""
    return message.split(":", 1)[0] if message else None


def gated_params_hash(params_hash: str, cascade: Cascade) -> str:
    """A gated result's params_hash: the annotator's params and the checks that gated it. The annotate
    stage selects a gated result again when this changes (or when the cascade is off)."""
    return hashlib.sha256(f"{params_hash}|{cascade.digest}".encode()).hexdigest()[:12]
