"""DistillMOS's spectral front end in numpy: what the ONNX export of the model starts after.

torch's ONNX exporter cannot carry the model's first step (a complex STFT), so both the CPU annotator
(annotators.distillmos) and the export (annotators.torch_exports) compute it here.
"""
from __future__ import annotations

import numpy as np

WINDOW = 122880  # 7.68 s at 16 kHz, the model's input length
HOP, WIN = 160, 320  # the model's STFT: 10 ms hop, 20 ms window
HANN = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)).astype(np.float32)  # periodic, as torch's


def compressed_spectra(batch: np.ndarray) -> np.ndarray:
    """(windows, 2, 161, 768) float32: the model's front end (peak normalisation, reflect padding, a
    320-point STFT with a periodic Hann window, magnitudes compressed to the power 0.3 keeping the phase),
    as distillmos computes it in torch, which the ONNX export cannot carry (complex STFT)."""
    x = batch / (np.abs(batch).max(axis=1, keepdims=True) + np.float32(1e-8))
    pad = (WIN - HOP) // 2
    x = np.pad(x, ((0, 0), (pad, pad)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, WIN, axis=1)[:, ::HOP]
    spectrum = np.fft.rfft(frames * HANN, axis=-1)
    parts = np.stack([spectrum.real, spectrum.imag], axis=-1).astype(np.float32)  # (windows, frames, 161, 2)
    magnitude = np.maximum(np.sqrt((parts ** 2).sum(-1, keepdims=True)), np.float32(1e-12))
    compressed = magnitude ** np.float32(0.3) * parts / magnitude
    return np.ascontiguousarray(compressed.transpose(0, 3, 2, 1), dtype=np.float32)
