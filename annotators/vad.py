"""VAD: speech segments, speech seconds and speech ratio from Silero VAD v6, in ONNX, without torch.

faster-whisper ships Silero VAD v6 as ONNX (and a numpy wrapper for it). Using that model here
(instead of the silero-vad package, whose wrapper needs torch) keeps torch out of CPU workers
(BENCHMARKS.md, "Annotators", has the memory it adds); bench/vad_bench.py measures how closely the two
agree on the corpus.

The model is run here, in pieces, rather than through faster-whisper's `get_speech_timestamps`:
that function copies the whole file twice (a padded copy, then every 32 ms window with its 64
samples of context), 1.6 GB for three hours of audio. `speech_probabilities` feeds the model the
same windows in the same batches, with the LSTM state carried between them, one batch of windows
at a time; `segments_from_probabilities` is Silero's segmentation (threshold with hysteresis,
minimum speech and silence, padding) as faster-whisper runs it. Both are tested to give the
segments `get_speech_timestamps` gives.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from annotators import faster_whisper_internals as fw
from annotators.base import Annotator, AudioItem, Resources

SEGMENT = pa.struct([pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64())])
WINDOW = 512  # samples per model step (32 ms at 16 kHz)
CONTEXT = 64  # samples of the previous window the model sees before each window
MODEL_BATCH = 10_000  # windows per onnxruntime call (faster-whisper's; the LSTM state crosses calls)


def speech_probabilities(session, x: np.ndarray) -> np.ndarray:
    """Silero's speech probability of each 512-sample window of `x` (zero-padded to a whole window
    plus at least one sample, as faster-whisper pads), computed MODEL_BATCH windows at a time."""
    n = len(x)
    padded = n + WINDOW - n % WINDOW
    total = padded // WINDOW
    h = np.zeros((1, 1, 128), np.float32)
    c = np.zeros((1, 1, 128), np.float32)
    out = []
    for w0 in range(0, total, MODEL_BATCH):
        w1 = min(total, w0 + MODEL_BATCH)
        lo = w0 * WINDOW - CONTEXT  # the previous window's tail is the first window's context
        piece = np.zeros((w1 - w0) * WINDOW + CONTEXT, np.float32)
        src = x[max(0, lo): min(n, w1 * WINDOW)]
        piece[max(0, -lo): max(0, -lo) + len(src)] = src
        if w1 == total:
            # faster-whisper zeroes the last window's final context-length samples before the windows
            # are assembled (the input of the last step, not only the context it would have lent on)
            piece[-CONTEXT:] = 0.0
        frames = np.lib.stride_tricks.sliding_window_view(piece, WINDOW + CONTEXT)[::WINDOW]
        probs, h, c = session.run(None, {"input": np.ascontiguousarray(frames), "h": h, "c": c})
        out.append(np.asarray(probs, np.float32).reshape(-1))
    return np.concatenate(out)


def segments_from_probabilities(probs: np.ndarray, n_samples: int, options, rate: int = 16000) -> list[dict]:
    """Speech segments ({"start", "end"} in samples) from window probabilities: Silero's rules with
    faster-whisper's option values (a segment opens at `threshold`, closes after `min_silence_ms` below
    `neg_threshold`, must last `min_speech_ms`, and is padded by `speech_pad_ms` into the silence around
    it). `max_speech_duration_s` is not supported (voxlake leaves it unbounded)."""
    if np.isfinite(options.max_speech_duration_s):
        raise ValueError("max_speech_duration_s is not supported")
    threshold = options.threshold
    neg_threshold = options.neg_threshold if options.neg_threshold is not None else max(threshold - 0.15, 0.01)
    min_speech = rate * options.min_speech_duration_ms / 1000
    min_silence = rate * options.min_silence_duration_ms / 1000
    pad = rate * options.speech_pad_ms / 1000
    speeches: list[dict] = []
    start, silent_since, triggered = 0, 0, False
    for i, p in enumerate(probs.tolist()):
        at = WINDOW * i
        if p >= threshold:
            silent_since = 0
            if not triggered:
                triggered, start = True, at
                continue
        if triggered and p < neg_threshold:
            silent_since = silent_since or at
            if at - silent_since < min_silence:
                continue
            if silent_since - start > min_speech:
                speeches.append({"start": start, "end": silent_since})
            triggered, silent_since = False, 0
    if triggered and n_samples - start > min_speech:
        speeches.append({"start": start, "end": n_samples})
    for i, s in enumerate(speeches):  # pad into the silences: split a short gap, else `pad` on each side
        if i == 0:
            s["start"] = int(max(0, s["start"] - pad))
        if i < len(speeches) - 1:
            nxt = speeches[i + 1]
            gap = nxt["start"] - s["end"]
            if gap < 2 * pad:
                s["end"] += int(gap // 2)
                nxt["start"] = int(max(0, nxt["start"] - gap // 2))
            else:
                s["end"] = int(min(n_samples, s["end"] + pad))
                nxt["start"] = int(max(0, nxt["start"] - pad))
        else:
            s["end"] = int(min(n_samples, s["end"] + pad))
    return speeches


class Vad(Annotator):
    name = "vad"
    expensive = False  # Silero VAD: the recipe's speech-ratio floor, and what asr reads
    version = "1.1.0"  # 1.1: faster-whisper's ONNX Silero v6 without torch (was the silero-vad package)
    resources = Resources(cpu_threads=1)
    default_params = {
        "threshold": 0.5,
        "min_speech_ms": 250,
        "min_silence_ms": 100,
        "speech_pad_ms": 30,
    }
    fields = [
        pa.field("speech_segments", pa.list_(SEGMENT)),
        pa.field("speech_s", pa.float64()),
        pa.field("speech_ratio", pa.float64()),
        pa.field("n_segments", pa.int32()),
    ]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        self._session = fw.silero_vad_session()  # one ONNX session per worker
        self.options = fw.vad_options(
            threshold=self.params["threshold"],
            min_speech_duration_ms=self.params["min_speech_ms"],
            min_silence_duration_ms=self.params["min_silence_ms"],
            speech_pad_ms=self.params["speech_pad_ms"],
        )

    def annotate(self, item: AudioItem) -> dict:
        sr = item.sample_rate
        stamps = []
        if len(item.samples):
            probs = speech_probabilities(self._session, item.samples)
            stamps = segments_from_probabilities(probs, len(item.samples), self.options, sr)
        segments = [{"start_s": s["start"] / sr, "end_s": s["end"] / sr} for s in stamps]
        speech = sum(s["end_s"] - s["start_s"] for s in segments)
        return {
            "speech_segments": segments,
            "speech_s": speech,
            "speech_ratio": speech / item.duration_s if item.duration_s > 0 else None,
            "n_segments": len(segments),
        }


def _intervals(rate: int, segments: list[dict] | None) -> tuple[np.ndarray, np.ndarray]:
    """The segments as sorted, disjoint [start, end) sample intervals (their union), with the same
    sample bounds a mask would use: int(start_s * rate) to int(end_s * rate)."""
    if not segments:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    bounds = sorted((int(s["start_s"] * rate), int(s["end_s"] * rate)) for s in segments)
    starts, ends = [], []
    for a, b in bounds:
        if b <= a:
            continue
        if starts and a <= ends[-1]:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    return np.array(starts, np.int64), np.array(ends, np.int64)


def speech_mask(n_samples: int, rate: int, segments: list[dict], start: int = 0) -> np.ndarray:
    """Boolean mask of the samples [start, start + n_samples) inside VAD segments (callers ask for
    a stretch at a time on long files: a mask of three hours is 170 MB)."""
    mask = np.zeros(n_samples, dtype=bool)
    starts, ends = _intervals(rate, segments)
    first = int(np.searchsorted(ends, start, side="right"))
    for a, b in zip(starts[first:].tolist(), ends[first:].tolist(), strict=True):
        if a >= start + n_samples:
            break
        mask[max(0, a - start): b - start] = True
    return mask


def speech_at(points: np.ndarray, rate: int, segments: list[dict]) -> np.ndarray:
    """Whether each sample index in `points` lies inside a VAD segment."""
    starts, ends = _intervals(rate, segments)
    k = np.searchsorted(starts, points, side="right") - 1  # the last interval starting at or before
    return (k >= 0) & (points < ends[np.maximum(k, 0)]) if len(starts) else np.zeros(len(points), bool)


def speech_before(points: np.ndarray, rate: int, segments: list[dict], n_samples: int) -> np.ndarray:
    """How many of the samples [0, p) lie inside VAD segments, for each p in `points` (p ≤ n_samples)."""
    starts, ends = _intervals(rate, segments)
    ends = np.minimum(ends, n_samples)
    keep = starts < ends
    starts, ends = starts[keep], ends[keep]
    if not len(starts):
        return np.zeros(len(points), np.int64)
    done = np.concatenate([[0], np.cumsum(ends - starts)])  # speech in the first k intervals
    k = np.searchsorted(starts, points, side="right")  # intervals starting before p
    last = np.maximum(k - 1, 0)
    partial = np.where(k > 0, np.minimum(points, ends[last]) - starts[last], 0)
    return done[np.maximum(k - 1, 0)] * (k > 0) + partial
