"""SNR: speech-to-noise ratio in dB.

With the VAD's segments, the noise power is measured where there is no speech and the speech power where
there is (minus the noise under it). Without enough non-speech (continuous speech, or digitally silent
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
    x = x[np.abs(x) > 0] if np.any(x) else x
    if x.size < 1600:
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
    default_params = {"min_noise_s": 0.25, "min_speech_s": 0.25}
    fields = [
        pa.field("snr_db", pa.float64()),
        pa.field("method", pa.string()),
        pa.field("speech_dbfs", pa.float64()),
        pa.field("noise_dbfs", pa.float64()),
    ]

    def annotate(self, item: AudioItem) -> dict:
        x, sr = item.samples, item.sample_rate
        mask = speech_mask(len(x), sr, item.upstream["vad"]["speech_segments"])
        n_speech, n_noise = int(mask.sum()), int((~mask).sum())
        p_speech = float(np.mean(np.square(x[mask], dtype=np.float64))) if n_speech else 0.0
        p_noise = float(np.mean(np.square(x[~mask], dtype=np.float64))) if n_noise else 0.0
        out = {"speech_dbfs": db(p_speech), "noise_dbfs": db(p_noise)}
        enough = n_speech >= self.params["min_speech_s"] * sr and n_noise >= self.params["min_noise_s"] * sr
        if enough and p_noise > 1e-10 and p_speech > p_noise:
            return {**out, "snr_db": 10 * np.log10((p_speech - p_noise) / p_noise), "method": "vad"}
        blind = wada_snr(x[mask] if n_speech >= sr else x)
        return {**out, "snr_db": blind, "method": "wada" if blind is not None else None}
