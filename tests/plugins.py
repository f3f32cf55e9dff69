"""Test-only annotators (registered through annotate.plugins in the tests that use them, never shipped).

They misbehave on files whose URI contains their `marker` param: sleep past the time limit, kill their
worker process, or raise an unexpected error (recorded as MODEL_ERROR, a transient code)."""
from __future__ import annotations

import os
import time

import pyarrow as pa

from annotators.base import Annotator, AudioItem


class _Marked(Annotator):
    version = "1"
    default_params = {"marker": "", "seconds": 0.0}
    fields = [pa.field("seen_s", pa.float64())]

    def hit(self, item: AudioItem) -> bool:
        return bool(self.params["marker"]) and self.params["marker"] in item.meta.get("uri", "")


class Sleepy(_Marked):
    """Sleeps `seconds` on marked files (and on every file when the marker is empty)."""

    name = "sleepy"

    def annotate(self, item: AudioItem) -> dict:
        if self.hit(item) or not self.params["marker"]:
            time.sleep(self.params["seconds"])
        return {"seen_s": item.duration_s}


class Crashy(_Marked):
    """Aborts the worker process on marked files (as a segfault in a native library would)."""

    name = "crashy"

    def annotate(self, item: AudioItem) -> dict:
        if self.hit(item):
            os.abort()
        return {"seen_s": item.duration_s}


class Flaky(_Marked):
    """Raises an unexpected error on marked files, every time."""

    name = "flaky"

    def annotate(self, item: AudioItem) -> dict:
        if self.hit(item):
            raise RuntimeError("flaky annotator fails on purpose")
        return {"seen_s": item.duration_s}
