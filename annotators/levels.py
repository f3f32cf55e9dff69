"""Levels: peak and RMS in dBFS, integrated loudness (ITU-R BS.1770-4), clipping, DC offset.

Measured on the native-rate signal with all its channels, so resampling or a mixdown cannot hide a clip.
Everything is computed in 10 s float32 chunks, so a long file costs no whole-signal float64 copy.

Loudness: BS.1770's K-weighting (the two filter stages' coefficients come from pyloudnorm, which
implements the standard) and its gating, accumulated per 100 ms step in a stream. Written here because
pyloudnorm copies the whole signal to float64 and refuses more than five channels; its result is the
reference this is tested against. Channel weights: 1.0 for the first three and 1.41 for the surrounds
(channels 4 and 5), as BS.1770 defines for 5.0; files with more channels have no standard layout to
read, so every channel beyond the fifth is weighted 1.0.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from annotators.base import Annotator, AudioItem, db

LOUDNESS_MIN_S = 0.4  # BS.1770 gates 400 ms blocks: shorter audio has no integrated loudness
CHUNK_S = 10.0
SURROUND_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)


def _chunks(x: np.ndarray, rate: int):
    step = max(1, int(CHUNK_S * rate))
    for start in range(0, len(x), step):
        yield start, x[start: start + step]


def integrated_loudness(x: np.ndarray, rate: int) -> float | None:
    """BS.1770-4 integrated loudness (LUFS) of (frames, channels) audio, streamed; None when fully gated."""
    import pyloudnorm
    from scipy.signal import lfilter, lfilter_zi

    n, channels = x.shape
    if n < LOUDNESS_MIN_S * rate:
        return None
    stages = [(f.b, f.a) for f in pyloudnorm.Meter(rate)._filters.values()]
    state = [np.outer(lfilter_zi(b, a), np.zeros(channels)) for b, a in stages]  # zero initial state
    steps = int(np.round((n / rate - 0.4) / 0.1)) + 1  # number of 400 ms blocks at 75 % overlap
    bounds = np.array([int(0.1 * k * rate) for k in range(steps + 4)])  # 100 ms step boundaries
    energy = np.zeros((len(bounds), channels))  # sum of squares of the K-weighted signal per step
    for start, chunk in _chunks(x, rate):
        y = chunk.astype(np.float64)
        for i, (b, a) in enumerate(stages):
            y, state[i] = lfilter(b, a, y, axis=0, zi=state[i])
        first = int(np.searchsorted(bounds, start, side="right")) - 1
        if first >= len(bounds):
            break
        inside = bounds[(bounds > start) & (bounds < start + len(y))] - start
        sums = np.add.reduceat(np.square(y), np.concatenate([[0], inside]).astype(int), axis=0)
        take = min(len(sums), len(bounds) - first)
        energy[first: first + take] += sums[:take]
    blocks = np.stack([energy[j: j + 4].sum(axis=0) for j in range(steps)]) / (0.4 * rate)  # (steps, ch)
    weights = np.array([SURROUND_WEIGHTS[c] if c < len(SURROUND_WEIGHTS) else 1.0 for c in range(channels)])
    with np.errstate(divide="ignore"):
        loudness = -0.691 + 10 * np.log10(blocks @ weights)
    gated = loudness >= -70.0
    if not gated.any():
        return None
    relative = -0.691 + 10 * np.log10(blocks[gated].mean(axis=0) @ weights) - 10.0
    keep = gated & (loudness > relative)
    if not keep.any():
        return None
    value = -0.691 + 10 * np.log10(blocks[keep].mean(axis=0) @ weights)
    return float(value) if np.isfinite(value) else None


class Levels(Annotator):
    name = "levels"
    expensive = False  # sample statistics: the recipe's clipping ceiling
    version = "1.1.0"  # 1.1: streamed BS.1770 (any channel count), float32 chunks
    default_params = {"clip_threshold": 0.999}
    fields = [
        pa.field("peak_dbfs", pa.float64()),
        pa.field("rms_dbfs", pa.float64()),
        pa.field("lufs", pa.float64()),
        pa.field("clipping_ratio", pa.float64()),
        pa.field("dc_offset", pa.float64()),
        pa.field("digital_silence", pa.bool_()),
    ]

    def annotate(self, item: AudioItem) -> dict:
        x = item.native if item.native is not None else item.samples[:, None]
        rate = item.native_rate or item.sample_rate
        if not x.size:
            return {"peak_dbfs": None, "rms_dbfs": None, "lufs": None, "clipping_ratio": None, "dc_offset": None,
                    "digital_silence": True}
        peak, power, clipped, total = 0.0, 0.0, 0, 0.0
        for _, chunk in _chunks(x, rate):
            a = np.abs(chunk)
            peak = max(peak, float(a.max()))
            clipped += int(np.count_nonzero(a >= self.params["clip_threshold"]))
            power += float(np.einsum("ij,ij->", chunk, chunk, dtype=np.float64))
            total += float(chunk.sum(dtype=np.float64))
        return {
            "peak_dbfs": db(peak * peak),
            "rms_dbfs": db(power / x.size),
            "lufs": integrated_loudness(x, rate),
            "clipping_ratio": clipped / x.size,
            "dc_offset": total / x.size,
            "digital_silence": peak == 0.0,
        }
