"""Annotators side by side on a GPU task: the device's annotators in a lane of their own beside the host's.

No GPU here, so the device lane is made of test annotators that say they were set up on CUDA (what
`Pipeline.lanes` reads) and sleep instead of computing; each records when it ran, which is what the
lanes must get right: overlap where nothing is shared, order where one reads another's result.
"""
from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from annotators.base import Annotator, AudioItem
from annotators.pipeline import FileInput, Pipeline
from annotators.registry import build

SPANS: dict[str, list[tuple[float, float]]] = {}  # annotator -> (start, end) per file
CALLS: list[tuple[str, str]] = []  # (annotator, audio_id) per call


class _Timed(Annotator):
    """Sleeps `seconds` per file (`slow_s` on files whose id holds `marker`) and records its span."""

    version = "1"
    default_params = {"seconds": 0.0, "marker": "", "slow_s": 0.0}
    fields = [pa.field("value", pa.string())]

    def annotate(self, item: AudioItem) -> dict:
        start = time.perf_counter()
        slow = self.params["marker"] and self.params["marker"] in item.audio_id
        time.sleep(self.params["slow_s"] if slow else self.params["seconds"])
        SPANS.setdefault(self.name, []).append((start, time.perf_counter()))
        CALLS.append((self.name, item.audio_id))
        return {"value": self.value(item)}

    def value(self, item: AudioItem) -> str:
        return self.name


class Prep(_Timed):  # what the device lane reads (as vad is for asr)
    name = "prep"


class Side(_Timed):  # reads nothing, read by nothing
    name = "side"


class Dev(_Timed):  # says it was set up on the GPU (`device` param), as asr does on a GPU task
    name = "dev"
    uses = ("prep",)
    default_params = {**_Timed.default_params, "device": "cuda"}

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        self.device = self.params["device"]

    def value(self, item: AudioItem) -> str:
        return "dev after " + item.upstream["prep"]["value"]


class Boom(Dev):
    name = "boom"

    def annotate(self, item: AudioItem) -> dict:
        raise RuntimeError("the device annotator fails on purpose")


class After(_Timed):  # reads the device's result (as text reads asr)
    name = "after"
    requires = ("dev",)

    def value(self, item: AudioItem) -> str:
        return "after " + item.upstream["dev"]["value"]


def _inputs(ids: list[str]) -> list[FileInput]:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros(1600, np.float32), 16000, format="WAV")
    data = buf.getvalue()
    return [FileInput(i, lambda: io.BytesIO(data), {"uri": i}) for i in ids]


def _pipeline(*annotators: Annotator, strict: bool = False) -> Pipeline:
    p = Pipeline(list(annotators), strict=strict)
    p.setup()
    return p


def test_the_default_annotators_form_a_host_and_a_device_lane():
    names = ["levels", "vad", "snr", "bandwidth", "pitch", "quality", "distillmos", "events", "speakers",
             "fingerprint", "asr", "text"]
    annotators = build(names)  # no models: only the lanes are asked for
    assert Pipeline(annotators).lanes() == [annotators]  # a CPU task: one lane, pipeline order
    for a in annotators:
        a.device = "cuda" if a.resources.gpu else "cpu"
    host, device = Pipeline(annotators).lanes()
    # quality and distillmos read asr and speakers (a long recording's windows go in its clips)
    assert [a.name for a in device] == ["asr", "speakers", "quality", "distillmos"]
    # what the device lane reads first, what reads the device's results last
    assert [a.name for a in host] == ["vad", "levels", "snr", "bandwidth", "pitch", "events", "fingerprint",
                                      "text"]


def test_lanes_overlap_and_keep_the_order_of_what_reads_what():
    SPANS.clear()
    lanes = _pipeline(Prep({"seconds": 0.1}), Side({"seconds": 0.3}), Dev({"seconds": 0.3}),
                      After({"seconds": 0.0}))
    assert [[a.name for a in lane] for lane in lanes.lanes()] == [["prep", "side", "after"], ["dev"]]
    outputs = lanes.run(_inputs(["a", "b"]))

    prep, side, dev, after = (SPANS[n] for n in ("prep", "side", "dev", "after"))
    assert dev[0][0] >= prep[-1][1]  # dev read prep's results of the group
    assert dev[0][0] < side[-1][1] and side[0][0] < dev[-1][1]  # side by side
    assert after[0][0] >= dev[-1][1]
    for out in outputs:
        assert out.results["after"]["value"] == "after dev after prep"
        assert {n: r["status"] for n, r in out.results.items()} == dict.fromkeys(
            ["prep", "side", "dev", "after"], "ok")

    SPANS.clear()  # the same annotators in one lane (a CPU task) give the same results
    sequential = _pipeline(Prep({"seconds": 0.1}), Side({"seconds": 0.3}), Dev({"device": "cpu"}),
                           After({"seconds": 0.0}))
    assert len(sequential.lanes()) == 1
    again = sequential.run(_inputs(["a", "b"]))
    assert [o.results["after"]["value"] for o in again] == [o.results["after"]["value"] for o in outputs]
    assert SPANS["dev"][0][0] >= SPANS["side"][-1][1]  # one after the other


def test_an_error_in_the_device_lane_reaches_the_caller_and_stops_the_host_lane():
    SPANS.clear()
    boom = Boom()
    after = After({"seconds": 0.0})
    after.requires = ("boom",)
    p = _pipeline(Prep({"seconds": 0.0}), Side({"seconds": 0.2}), boom, after, strict=True)
    with pytest.raises(RuntimeError, match="fails on purpose"):
        p.run(_inputs(["a"]))
    assert "after" not in SPANS  # it waited for boom, which never finished


def test_the_time_limit_holds_with_lanes():
    """A file over the per-file limit in the device lane ends as TIMEOUT on its own; the lane's call
    finishes before the files are tried one by one (never two calls into one annotator)."""
    from udfs.annotate import _run_files

    SPANS.clear()
    CALLS.clear()
    p = _pipeline(Prep({"seconds": 0.0}), Dev({"seconds": 0.0, "marker": "slow", "slow_s": 1.5}),
                  After({"seconds": 0.0}))
    outputs = _run_files(p, _inputs(["fine", "slow", "also-fine"]), timeout_s=0.3)
    assert {o.audio_id: o.results["dev"]["status"] for o in outputs} == {
        "fine": "ok", "slow": "failed", "also-fine": "ok"}
    slow = next(o for o in outputs if o.audio_id == "slow")
    assert {r["error_code"] for r in slow.results.values()} == {"TIMEOUT"}
    spans = sorted(SPANS["dev"])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))  # never two at once
    # in the group of three, then alone; `after` never saw it (its input timed out)
    assert CALLS.count(("dev", "slow")) == 2 and ("after", "slow") not in CALLS
