"""VAD without torch: faster-whisper's ONNX Silero v6 (what `vad` runs) against the silero-vad package.

Both run with the `vad` annotator's params over every corpus file (speech, multi-speaker and non-speech),
decoded once by voxlake's decoder. Agreement is counted on 10 ms frames; speed is one core, one thread.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from bench.report import publish

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"  # the real-audio test corpus, in the repository
FRAME_S = 0.01


def corpus_audio() -> list[tuple[str, np.ndarray]]:
    from annotators.decode import DecodeLimits, decode

    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    out = []
    for r in rows:
        with open(CORPUS / r["path"], "rb") as fh:
            out.append((r["kind"], decode(fh, DecodeLimits()).samples))
    return out


def mask(segments: list[tuple[float, float]], seconds: float) -> np.ndarray:
    m = np.zeros(int(np.ceil(seconds / FRAME_S)), dtype=bool)
    for start, end in segments:
        m[int(start / FRAME_S): int(np.ceil(end / FRAME_S))] = True
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    import os

    os.sched_setaffinity(0, {0})
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    from annotators.vad import Vad

    torch.set_num_threads(1)
    vad = Vad()
    vad.setup()
    p = vad.params
    reference = load_silero_vad(onnx=True)
    files = corpus_audio()
    agree = total = both = either = 0
    ours_s = theirs_s = ours_t = theirs_t = 0.0
    worst = 0.0
    for _, samples in files:
        seconds = len(samples) / 16000
        t = time.perf_counter()
        from annotators.base import AudioItem

        ours = vad.annotate(AudioItem("x", samples, 16000))
        ours_t += time.perf_counter() - t
        t = time.perf_counter()
        reference.reset_states()
        stamps = get_speech_timestamps(torch.from_numpy(samples), reference, sampling_rate=16000,
                                       threshold=p["threshold"], min_speech_duration_ms=p["min_speech_ms"],
                                       min_silence_duration_ms=p["min_silence_ms"], speech_pad_ms=p["speech_pad_ms"])
        theirs_t += time.perf_counter() - t
        a = mask([(s["start_s"], s["end_s"]) for s in ours["speech_segments"]], seconds)
        b = mask([(s["start"] / 16000, s["end"] / 16000) for s in stamps], seconds)
        agree += int((a == b).sum())
        total += len(a)
        both += int((a & b).sum())
        either += int((a | b).sum())
        ours_s += a.sum() * FRAME_S
        theirs_s += b.sum() * FRAME_S
        worst = max(worst, abs(a.sum() - b.sum()) * FRAME_S / max(seconds, 1e-9))
    audio_s = total * FRAME_S
    publish(Path(args.out), "vad", [
        "## VAD without torch: agreement with the silero-vad package",
        "",
        f"Every corpus file ({len(files)} files, {audio_s:.0f} s: speech, multi-speaker, non-speech), the `vad` "
        f"annotator's params (threshold {p['threshold']}, min speech {p['min_speech_ms']} ms, min silence "
        f"{p['min_silence_ms']} ms, pad {p['speech_pad_ms']} ms), 10 ms frames, one core.",
        "",
        "| | speech found (s) | one-core x realtime |",
        "| --- | ---: | ---: |",
        f"| `vad` 1.1 (faster-whisper's Silero v6 ONNX, numpy, no torch) | {ours_s:.1f} | {audio_s / ours_t:,.0f} |",
        f"| silero-vad package (ONNX through its torch wrapper) | {theirs_s:.1f} | {audio_s / theirs_t:,.0f} |",
        "",
        f"Frames labelled alike: **{agree / total:.2%}**; speech IoU {both / max(either, 1):.3f}; the largest "
        f"per-file difference in speech share is {worst:.1%} of the file.",
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
