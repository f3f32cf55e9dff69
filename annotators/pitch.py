"""Pitch: f0 mean/median/std in Hz and the voiced ratio, over speech (VAD) frames.

f0 per 10 ms frame comes from librosa's YIN (fast). YIN always answers, so voicing is decided here: a
frame is voiced when the normalised autocorrelation at the YIN period is high (a periodic waveform)
and the frame is not near-silent. pYIN decides voicing itself but runs 20x slower (STACK_NOTES). When the
VAD found no speech (or did not run), active frames (within 40 dB of the loudest) are used instead;
`region` says which.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from annotators.base import OK, AnnotationError, Annotator, AudioItem
from annotators.vad import speech_at
from schemas.errors import ErrorCode

HOP = 160  # 10 ms at 16 kHz
FRAME = 1024
CHUNK_FRAMES = 6000  # 60 s of frames per pass


def warm_up(fmin_hz: float = 60.0, fmax_hz: float = 500.0) -> None:
    """Compile (or load from NUMBA_CACHE_DIR) librosa's numba YIN kernels."""
    import librosa

    librosa.yin(np.zeros(FRAME * 2, np.float32), fmin=fmin_hz, fmax=fmax_hz, sr=16000, frame_length=FRAME,
                hop_length=HOP, center=False)


class Pitch(Annotator):
    name = "pitch"
    expensive = True  # pYIN over every frame; no recipe check reads it
    version = "1.0.0"
    uses = ("vad",)  # pitch over speech when VAD ran, else over active frames
    default_params = {"fmin_hz": 60.0, "fmax_hz": 500.0, "voicing_corr": 0.6, "active_db": 40.0}
    fields = [
        pa.field("f0_mean_hz", pa.float64()),
        pa.field("f0_median_hz", pa.float64()),
        pa.field("f0_std_hz", pa.float64()),
        pa.field("voiced_ratio", pa.float64()),
        pa.field("region", pa.string()),
    ]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        # librosa's YIN is numba-compiled on first use (seconds): pay that here, once per worker,
        # instead of on the first file (NUMBA_CACHE_DIR, set by the Makefile, keeps it across runs)
        warm_up(self.params["fmin_hz"], self.params["fmax_hz"])

    def annotate(self, item: AudioItem) -> dict:
        x, sr = item.samples, item.sample_rate
        if len(x) < FRAME:
            raise AnnotationError(ErrorCode.TOO_SHORT, f"need at least {FRAME} samples at 16 kHz")
        f0, energy, periodicity = self._frames(x, sr)
        centers = np.arange(len(f0)) * HOP + FRAME // 2

        vad = item.upstream.get("vad")
        if vad and vad.get("status") == OK and vad.get("speech_segments"):
            region_mask = speech_at(np.minimum(centers, len(x) - 1), sr, vad["speech_segments"])
            region = "speech"
        else:
            peak = energy.max()
            region_mask = energy > peak * 10 ** (-self.params["active_db"] / 10) if peak > 0 else energy > 0
            region = "active"
        if not region_mask.any():
            return {"f0_mean_hz": None, "f0_median_hz": None, "f0_std_hz": None, "voiced_ratio": None,
                    "region": region}
        periodic = periodicity >= self.params["voicing_corr"]
        loud = energy > max(energy.max() * 1e-5, 1e-10)
        voiced = region_mask & periodic & loud
        values = f0[voiced]
        return {
            "f0_mean_hz": float(values.mean()) if values.size else None,
            "f0_median_hz": float(np.median(values)) if values.size else None,
            "f0_std_hz": float(values.std()) if values.size else None,
            "voiced_ratio": float(voiced.sum() / region_mask.sum()),
            "region": region,
        }

    def _frames(self, x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """f0, energy and periodicity per 10 ms frame, computed over CHUNK_FRAMES frames at a time.

        Each frame is computed from its own 1024 samples, so chunking gives exactly the frames of one
        pass over the whole signal, without holding a frame matrix (6x the signal) for a long file.
        """
        import librosa

        total = 1 + (len(x) - FRAME) // HOP
        f0s, energies, periods = [], [], []
        for k0 in range(0, total, CHUNK_FRAMES):
            k1 = min(total, k0 + CHUNK_FRAMES)
            seg = x[k0 * HOP: (k1 - 1) * HOP + FRAME]
            f0 = librosa.yin(seg, fmin=self.params["fmin_hz"], fmax=self.params["fmax_hz"], sr=sr,
                             frame_length=FRAME, hop_length=HOP, center=False)
            frames = librosa.util.frame(seg, frame_length=FRAME, hop_length=HOP, axis=0)[: len(f0)]
            energies.append(np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / FRAME)
            periods.append(self._periodicity(frames, sr / f0))
            f0s.append(f0)
        return np.concatenate(f0s), np.concatenate(energies), np.concatenate(periods)

    @staticmethod
    def _periodicity(frames: np.ndarray, period: np.ndarray) -> np.ndarray:
        """Normalised correlation between each frame's first half and itself one period later."""
        width = FRAME // 2
        lag = np.clip(np.rint(period).astype(int), 1, FRAME - width)
        rows = np.arange(len(frames))[:, None]
        a = frames[:, :width]
        b = frames[rows, lag[:, None] + np.arange(width)[None, :]]
        num = np.sum(a * b, axis=1)
        den = np.sqrt(np.sum(a * a, axis=1) * np.sum(b * b, axis=1)) + 1e-12
        return num / den
