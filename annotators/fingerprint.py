"""Fingerprint: what `voxlake link` needs to find the same recording under another name.

Two views of the decoded audio:
- `pcm_sha256`: the SHA-256 of the 16 kHz mono int16 view. Equal for identical audio in different
  containers (a WAV and a FLAC of the same PCM, or the same file at another path with other bytes).
- `landmarks`: a set of spectral-peak-pair hashes (f1, f2, dt), the classic landmark fingerprint
  (Wang, "An Industrial-Strength Audio Search Algorithm", 2003). A pair of peaks keeps its frequencies
  and its time gap through re-encoding (MP3), resampling, gain changes and trimming, so two copies share
  a large part of their sets and unrelated audio almost none: Jaccard similarity, which Spark ML's
  MinHashLSH estimates across the archive without comparing all pairs.
Written here because the maintained fingerprinters (Chromaprint via `fpcalc`) need a native tool on
every executor and produce time-aligned codes, not sets; this is a few numpy lines on audio already decoded.

Peaks are taken between 250 and 3800 Hz only, so that a telephone-band (8 kHz) copy matches its
wideband original. Long files keep their `max_landmarks` smallest hashes (a bottom-k sample: two copies
of one file keep mostly the same ones), so a row stays small.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

from annotators.base import Annotator, AudioItem

SR = 16000
N_FFT = 1024
HOP = 256  # 16 ms
F_MIN, F_MAX = 250.0, 3800.0
NEIGHBOURHOOD = (15, 15)  # frames x bins: a peak is the largest value around it
DYNAMIC_RANGE_DB = 50.0  # peaks quieter than the loudest one by more than this are ignored
MAX_DT = 40  # frames (0.64 s) between the two peaks of a pair
PIECE_FRAMES = 4096  # frames (65 s) per piece of spectrogram and peak search
HASH_SPACE = 1 << 24  # landmarks are indices of a sparse vector of this size (MinHashLSH's input)


def pcm_sha256(samples: np.ndarray) -> str:
    """SHA-256 of the 16 kHz int16 view (the rounding makes it stable across float decoders), hashed
    a minute at a time: the int16 copy of a long file and its float temporaries would be GBs."""
    digest = hashlib.sha256()
    step = 60 * SR
    for a in range(0, len(samples), step):
        digest.update(np.round(np.clip(samples[a: a + step], -1.0, 1.0) * 32767.0).astype("<i2").tobytes())
    return digest.hexdigest()


def _band_frames(x: np.ndarray, a: int, b: int) -> np.ndarray:
    """dB magnitudes between F_MIN and F_MAX of the frames [a, b), (frames, bins). Each frame's FFT is
    its own, so any stretch of frames has the values a pass over the whole file would give."""
    window = np.hanning(N_FFT).astype(np.float32)
    lo, hi = int(F_MIN * N_FFT / SR), int(F_MAX * N_FFT / SR)
    frames = np.lib.stride_tricks.as_strided(x[a * HOP:], (b - a, N_FFT), (x.strides[0] * HOP, x.strides[0]))
    return 20 * np.log10(np.abs(np.fft.rfft(frames * window, axis=1))[:, lo:hi] + 1e-9)


def _peaks(x: np.ndarray, peaks_per_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of the band spectrogram within DYNAMIC_RANGE_DB of its loudest value.

    The spectrogram is computed PIECE_FRAMES frames at a time, twice (its maximum first, then the
    peaks), and never held whole: three hours of it are 0.6 GB, and the windowed frames and complex
    spectrum of a pass over the whole file several GB."""
    from scipy.ndimage import maximum_filter

    n = 1 + (len(x) - N_FFT) // HOP
    floor = max(float(_band_frames(x, a, min(n, a + PIECE_FRAMES)).max()) for a in range(0, n, PIECE_FRAMES))
    floor -= DYNAMIC_RANGE_DB
    reach = NEIGHBOURHOOD[0] // 2  # frames on each side that decide whether a value is a local maximum
    found = []
    for a in range(0, n, PIECE_FRAMES):
        b = min(n, a + PIECE_FRAMES)
        lo, hi = max(0, a - reach), min(n, b + reach)
        spec = _band_frames(x, lo, hi)
        local_max = maximum_filter(spec, size=NEIGHBOURHOOD, mode="constant", cval=-np.inf)[a - lo: b - lo]
        piece = spec[a - lo: b - lo]
        t, f = np.nonzero((piece == local_max) & (piece > floor))
        found.append((t + a, f, piece[t, f]))
    t, f, level = (np.concatenate([p[k] for p in found]) for k in range(3))
    keep = int(peaks_per_s * len(x) / SR) + 1
    if len(t) > keep:  # the strongest peaks survive coding noise best
        idx = np.sort(np.argsort(-level, kind="stable")[:keep])
        t, f = t[idx], f[idx]
    order = np.lexsort((f, t))
    return t[order], f[order]


def landmarks(x: np.ndarray, peaks_per_s: float = 20.0, fan_out: int = 10, max_landmarks: int = 2048,
              quantize: int = 2) -> np.ndarray:
    """Sorted unique landmark hashes in [0, HASH_SPACE). Frequencies and time gaps are quantized by
    `quantize` (bins, frames) so that a peak moved by one bin or one frame still matches."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < N_FFT or not np.any(x):
        return np.zeros(0, np.int64)
    t, f = _peaks(x, peaks_per_s)
    codes = []
    for i in range(len(t)):
        paired = 0
        for j in range(i + 1, len(t)):
            dt = t[j] - t[i]
            if dt > MAX_DT:
                break
            if dt < 1:
                continue
            codes.append(((int(f[i]) // quantize) << 16) | ((int(f[j]) // quantize) << 6) | (int(dt) // quantize))
            paired += 1
            if paired >= fan_out:
                break
    if not codes:
        return np.zeros(0, np.int64)
    # mix the codes into the hash space (a fixed multiplicative hash), so that the bottom-k sample
    # below is spread over all frequencies rather than the lowest ones
    mixed = (np.unique(np.array(codes, np.uint64)) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    out = np.unique(mixed.astype(np.int64) % HASH_SPACE)
    return out[:max_landmarks]


def jaccard(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    union = len(np.union1d(a, b))
    return len(np.intersect1d(a, b)) / union if union else 0.0


class Fingerprint(Annotator):
    name = "fingerprint"
    expensive = False  # duplicate detection needs it on every file
    version = "1.0.0"
    default_params = {"peaks_per_s": 20.0, "fan_out": 10, "max_landmarks": 2048}
    fields = [
        pa.field("pcm_sha256", pa.string()),
        pa.field("landmarks", pa.list_(pa.int64())),
        pa.field("n_landmarks", pa.int32()),
    ]

    def annotate(self, item: AudioItem) -> dict:
        digest = pcm_sha256(item.samples)
        marks = landmarks(item.samples, self.params["peaks_per_s"], self.params["fan_out"],
                          self.params["max_landmarks"])
        return {"pcm_sha256": digest, "landmarks": marks.tolist(), "n_landmarks": len(marks)}
