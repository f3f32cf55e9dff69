"""Levels: peak and RMS in dBFS, integrated loudness (ITU-R BS.1770 via pyloudnorm), clipping, DC offset.

Measured on the native-rate signal with all its channels, so resampling or a mixdown cannot hide a clip.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from annotators.base import Annotator, AudioItem, db

LOUDNESS_MIN_S = 0.4  # BS.1770 gates 400 ms blocks: shorter audio has no integrated loudness


class Levels(Annotator):
    name = "levels"
    version = "1.0.0"
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
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        power = float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0
        return {
            "peak_dbfs": db(peak * peak),
            "rms_dbfs": db(power),
            "lufs": self._lufs(x, rate),
            "clipping_ratio": float(np.mean(np.abs(x) >= self.params["clip_threshold"])) if x.size else None,
            "dc_offset": float(np.mean(x, dtype=np.float64)) if x.size else None,
            "digital_silence": peak == 0.0,
        }

    @staticmethod
    def _lufs(x: np.ndarray, rate: int) -> float | None:
        import pyloudnorm

        if len(x) < LOUDNESS_MIN_S * rate:
            return None
        with np.errstate(divide="ignore"):
            value = pyloudnorm.Meter(rate).integrated_loudness(x.astype(np.float64))
        return float(value) if np.isfinite(value) else None  # fully gated (silence): no loudness
