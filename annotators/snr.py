"""SNR: speech-to-noise ratio in dB.

With the VAD's segments, the noise power is a low percentile of the 20 ms frame powers away from speech (a guard
band around each segment, since VAD boundaries are soft) and the speech power is the mean frame power
inside speech, minus the noise under it. Without enough non-speech (continuous speech, or digitally silent
gaps), WADA-SNR (Kim & Stern, Interspeech 2008), a blind estimator, is used instead; `method` says which.
WADA is written here because no maintained library ships it: it compares the waveform's amplitude
distribution against that of Gamma-distributed speech (shape 0.4) in Gaussian noise. Its lookup table is
generated once per process by a seeded simulation of that model rather than copied from somewhere.
"""
from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from annotators.base import Annotator, AudioItem, db
from annotators.vad import speech_before, speech_mask

FRAME_S = 0.02
CHUNK_FRAMES = 500  # 10 s of 20 ms frames per pass
WADA_ALPHA = 0.4
WADA_SNRS = np.arange(-20.0, 101.0, 1.0)


@functools.lru_cache(maxsize=1)
def _wada_table() -> np.ndarray:
    """G(snr) = log(E|z|) - E(log|z|) for z = gamma-speech + gaussian noise at each SNR in WADA_SNRS."""
    rng = np.random.default_rng(20080922)
    n = 400_000
    speech = rng.gamma(WADA_ALPHA, 1.0, n) * rng.choice([-1.0, 1.0], n)
    speech /= np.sqrt(np.mean(speech**2))
    noise = rng.standard_normal(n)
    table = []
    for snr in WADA_SNRS:
        z = np.abs(speech * 10 ** (snr / 20) + noise) + 1e-20
        table.append(np.log(np.mean(z)) - np.mean(np.log(z)))
    return np.array(table)


def wada_snr(chunks) -> float | None:
    """WADA-SNR of the non-zero samples of `chunks` (a callable giving the signal's pieces, read twice:
    the peak, then the amplitude statistics; no float64 copy of a long signal is made)."""
    peak, count = 0.0, 0
    for c in chunks():
        a = np.abs(c[c != 0])
        if a.size:
            peak, count = max(peak, float(a.max())), count + a.size
    if count < 1600:  # silence, or too little signal for an amplitude distribution
        return None
    total, total_log = 0.0, 0.0
    for c in chunks():
        z = np.maximum(np.abs(c[c != 0].astype(np.float64)) / peak, 1e-20)
        total += float(z.sum())
        total_log += float(np.log(z).sum())
    g = np.log(total / count) - total_log / count
    table = _wada_table()  # increases with SNR
    g = float(np.clip(g, table[0], table[-1]))
    return float(np.interp(g, table, WADA_SNRS))


class Snr(Annotator):
    name = "snr"
    expensive = False  # from the VAD's segments: the recipe's SNR floor
    version = "1.0.0"
    requires = ("vad",)
    default_params = {"min_noise_s": 0.25, "min_speech_s": 0.25, "guard_s": 0.1, "noise_percentile": 10}
    fields = [
        pa.field("snr_db", pa.float64()),
        pa.field("method", pa.string()),
        pa.field("speech_dbfs", pa.float64()),
        pa.field("noise_dbfs", pa.float64()),
    ]

    def annotate(self, item: AudioItem) -> dict:
        return measure_snr(item.samples, item.sample_rate, item.upstream["vad"]["speech_segments"], self.params)


def measure_snr(x: np.ndarray, sr: int, segments: list[dict], params: dict) -> dict:
    """snr_db, method, speech_dbfs and noise_dbfs of `x` with its VAD `segments` (seconds from x's start):
    the file's measure, and each clip's on its own span (annotators.clips)."""
    # VAD boundaries are soft: keep `guard_s` away from speech when measuring noise
    guard = int(params["guard_s"] * sr) / sr
    widened = [{"start_s": max(0.0, s["start_s"] - guard), "end_s": s["end_s"] + guard} for s in segments]
    frame = int(FRAME_S * sr)
    n_frames = len(x) // frame
    power = np.empty(n_frames)
    in_speech = np.empty(n_frames, bool)
    in_noise = np.empty(n_frames, bool)
    # CHUNK_FRAMES frames at a time: the masks and float64 squares of a whole long file are GBs
    for f0 in range(0, n_frames, CHUNK_FRAMES):
        f1 = min(n_frames, f0 + CHUNK_FRAMES)
        a, b = f0 * frame, f1 * frame
        power[f0:f1] = np.mean(np.square(x[a:b].reshape(f1 - f0, frame), dtype=np.float64), axis=1)
        in_speech[f0:f1] = speech_mask(b - a, sr, segments, start=a).reshape(f1 - f0, frame).all(axis=1)
        in_noise[f0:f1] = ~speech_mask(b - a, sr, widened, start=a).reshape(f1 - f0, frame).any(axis=1)
    p_speech = float(power[in_speech].mean()) if in_speech.any() else 0.0
    # a low percentile resists breaths and clicks left in the gaps (for stationary noise it is
    # within 0.5 dB of the mean power: 20 ms frames at 16 kHz average 320 samples)
    p_noise = float(np.percentile(power[in_noise], params["noise_percentile"])) if in_noise.any() else 0.0
    out = {"speech_dbfs": db(p_speech), "noise_dbfs": db(p_noise)}
    enough = (in_speech.sum() * FRAME_S >= params["min_speech_s"]
              and in_noise.sum() * FRAME_S >= params["min_noise_s"])
    if enough and p_noise > 1e-10 and p_speech > p_noise:
        return {**out, "snr_db": float(10 * np.log10((p_speech - p_noise) / p_noise)), "method": "vad"}
    step = CHUNK_FRAMES * frame
    speech_only = int(speech_before(np.array([len(x)]), sr, segments, len(x))[0]) >= sr

    def chunks():  # the speech samples when there is a second of them, else the whole signal
        for a in range(0, len(x), step):
            piece = x[a: a + step]
            yield piece[speech_mask(len(piece), sr, segments, start=a)] if speech_only else piece

    blind = wada_snr(chunks)
    return {**out, "snr_db": blind, "method": "wada" if blind is not None else None}
