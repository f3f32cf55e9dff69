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
from annotators.vad import speech_mask

FRAME_S = 0.02
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


def wada_snr(x: np.ndarray) -> float | None:
    x = x[np.abs(x) > 0]
    if x.size < 1600:  # silence, or too little signal for an amplitude distribution
        return None
    z = np.abs(x.astype(np.float64)) / np.max(np.abs(x))
    z = np.maximum(z, 1e-20)
    g = np.log(np.mean(z)) - np.mean(np.log(z))
    table = _wada_table()  # increases with SNR
    g = float(np.clip(g, table[0], table[-1]))
    return float(np.interp(g, table, WADA_SNRS))


class Snr(Annotator):
    name = "snr"
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
        x, sr = item.samples, item.sample_rate
        segments = item.upstream["vad"]["speech_segments"]
        speech = speech_mask(len(x), sr, segments)
        # VAD boundaries are soft: keep `guard_s` away from speech when measuring noise
        guard = int(self.params["guard_s"] * sr)
        widened = speech_mask(len(x), sr, [
            {"start_s": max(0.0, s["start_s"] - guard / sr), "end_s": s["end_s"] + guard / sr} for s in segments
        ])
        frame = int(FRAME_S * sr)
        n_frames = len(x) // frame
        power = np.mean(np.square(x[: n_frames * frame].reshape(n_frames, frame), dtype=np.float64), axis=1)
        in_speech = speech[: n_frames * frame].reshape(n_frames, frame).all(axis=1)
        in_noise = ~widened[: n_frames * frame].reshape(n_frames, frame).any(axis=1)
        p_speech = float(power[in_speech].mean()) if in_speech.any() else 0.0
        # a low percentile resists breaths and clicks left in the gaps (for stationary noise it is
        # within 0.5 dB of the mean power: 20 ms frames at 16 kHz average 320 samples)
        p_noise = float(np.percentile(power[in_noise], self.params["noise_percentile"])) if in_noise.any() else 0.0
        out = {"speech_dbfs": db(p_speech), "noise_dbfs": db(p_noise)}
        enough = (in_speech.sum() * FRAME_S >= self.params["min_speech_s"]
                  and in_noise.sum() * FRAME_S >= self.params["min_noise_s"])
        if enough and p_noise > 1e-10 and p_speech > p_noise:
            return {**out, "snr_db": float(10 * np.log10((p_speech - p_noise) / p_noise)), "method": "vad"}
        blind = wada_snr(x[speech] if speech.sum() >= sr else x)
        return {**out, "snr_db": blind, "method": "wada" if blind is not None else None}
