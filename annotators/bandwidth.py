"""Bandwidth: the effective audio bandwidth in Hz, from the long-term spectrum at the native rate.

A telephone recording upsampled into a 48 kHz file still has nothing above ~4 kHz; the sample rate in
the header cannot tell, this can. The cutoff is the highest frequency whose smoothed level (Welch PSD,
averaged over `smooth_hz`) stays within `drop_db` of the level of the 200-3000 Hz band that carries
speech. A resampler's or codec's empty band lies 90 dB or more below speech; real content, even a faint
noise floor, lies well within 50 dB, so the cliff is unambiguous.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from annotators.base import AnnotationError, Annotator, AudioItem
from schemas.errors import ErrorCode

CHUNK_SEGMENTS = 1024  # Welch segments per pass (about 45-90 s of audio)


def long_term_psd(x: np.ndarray, rate: int, nperseg: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch's mean PSD of the channel mix, computed over chunks of whole segments (half overlap).

    Each segment's periodogram depends on its own samples only, so the weighted mean of the chunks'
    means is exactly the one-pass result, without a segment matrix the size of the whole signal.
    """
    from scipy.signal import welch

    step = nperseg // 2
    segments = 1 + (len(x) - nperseg) // step
    total, freqs = None, None
    for s0 in range(0, segments, CHUNK_SEGMENTS):
        s1 = min(segments, s0 + CHUNK_SEGMENTS)
        chunk = x[s0 * step: (s1 - 1) * step + nperseg]
        mono = chunk.mean(axis=1) if chunk.ndim == 2 else chunk
        freqs, psd = welch(mono, fs=rate, nperseg=nperseg, noverlap=step, window="hann", average="mean")
        total = psd * (s1 - s0) if total is None else total + psd * (s1 - s0)
    return freqs, total / segments


class Bandwidth(Annotator):
    name = "bandwidth"
    expensive = False  # one spectrum: the recipe's bandwidth floor
    version = "1.0.0"
    default_params = {"drop_db": 50.0, "smooth_hz": 200.0}
    fields = [
        pa.field("effective_hz", pa.float64()),
        pa.field("nyquist_hz", pa.float64()),
        pa.field("bandwidth_ratio", pa.float64()),
    ]

    def annotate(self, item: AudioItem) -> dict:
        from scipy.ndimage import uniform_filter1d

        x = item.native if item.native is not None else item.samples[:, None]
        rate = item.native_rate or item.sample_rate
        nperseg = 2048 if rate <= 24000 else 4096
        if len(x) < max(2048, nperseg) or not np.any(x):
            raise AnnotationError(ErrorCode.TOO_SHORT, "need at least 2048 non-silent samples for a spectrum")
        freqs, psd = long_term_psd(x, rate, nperseg)
        level = 10 * np.log10(psd + 1e-30)
        width = max(1, int(self.params["smooth_hz"] / (freqs[1] - freqs[0])))
        smooth = uniform_filter1d(level, size=width, mode="nearest")
        speech_band = (freqs >= 200) & (freqs <= 3000)
        reference = np.percentile(smooth[speech_band], 90)
        threshold = reference - self.params["drop_db"]
        above = np.nonzero(smooth >= threshold)[0]
        nyquist = rate / 2
        effective = float(freqs[above[-1]]) if above.size else None
        return {
            "effective_hz": effective,
            "nyquist_hz": float(nyquist),
            "bandwidth_ratio": effective / nyquist if effective else None,
        }
