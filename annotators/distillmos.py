"""DistillMOS: a second, independent MOS opinion (Stahl & Gamper, 2025; MIT), weights inside its wheel.

A small convolution + transformer model distilled from an XLS-R based quality model, scoring 7.68 s
windows of 16 kHz audio (1-5). The package's own forward pass slides its window by 1 s (about 8x the
work); here the windows do not overlap (the last is aligned to the end, a short clip is zero-padded as
the package does), long files are sampled (`coverage`), the windows go through the model a few at a
time, and the file's score is their mean. It runs in
torch, on the task's GPU when it has one.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pyarrow as pa

from annotators.base import AnnotationError, Annotator, AudioItem, Resources
from schemas.errors import ErrorCode

SR = 16000
WINDOW = 122880  # 7.68 s, the model's input length
MIN_S = 1.0
WINDOWS_PER_CALL = 4  # per forward pass on CPU (its activations: ~60 MB per window)
WINDOWS_PER_CALL_GPU = 24


def windows(x: np.ndarray, max_windows: int, coverage: float = 1.0) -> np.ndarray:
    """Non-overlapping model windows (the last aligned to the end), evenly thinned to `coverage` of the
    audio and at most max_windows."""
    if len(x) <= WINDOW:
        return np.pad(x, (0, WINDOW - len(x)))[None, :]
    starts = list(range(0, len(x) - WINDOW + 1, WINDOW))
    if starts[-1] + WINDOW < len(x):
        starts.append(len(x) - WINDOW)
    keep = min(max_windows, max(2, int(np.ceil(coverage * len(x) / WINDOW))))
    if len(starts) > keep:
        starts = [starts[int(i)] for i in np.linspace(0, len(starts) - 1, keep).round()]
    return np.stack([x[s: s + WINDOW] for s in starts])


class DistillMos(Annotator):
    name = "distillmos"
    version = "1.0.0"
    resources = Resources(cpu_threads=1, gpu=True)
    # The model costs ~0.5 s per window on one core (bench annotators): like DNSMOS, long files are
    # scored on evenly spaced windows over `coverage` of their length (at least 2, at most max_windows)
    default_params = {"coverage": 0.3, "max_windows": 24}
    fields = [pa.field("mos", pa.float64()), pa.field("n_windows", pa.int32())]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        import torch
        from distillmos import ConvTransformerSQAModel

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        with contextlib.redirect_stdout(io.StringIO()):  # it prints where its weights came from
            model = ConvTransformerSQAModel(segmenting_in_forward=False)
        self._device = torch.device(f"cuda:{device_index}" if device == "cuda" else "cpu")
        self._model = model.eval().to(self._device)
        self._per_call = WINDOWS_PER_CALL_GPU if device == "cuda" else WINDOWS_PER_CALL

    def annotate(self, item: AudioItem) -> dict:
        import torch

        if item.duration_s < MIN_S:
            raise AnnotationError(ErrorCode.TOO_SHORT, f"DistillMOS needs at least {MIN_S} s")
        # windows first, then the clip and cast: on the windows, not on a copy of the whole file
        batch = np.clip(windows(item.samples, self.params["max_windows"], self.params["coverage"]),
                        -1.0, 1.0).astype(np.float32)
        try:
            with torch.no_grad():  # WINDOWS_PER_CALL at a time: 24 windows in one call need 1.4 GB on CPU
                scores = np.concatenate([
                    self._model(torch.from_numpy(batch[k: k + self._per_call]).to(self._device)).float().cpu().numpy().ravel()
                    for k in range(0, len(batch), self._per_call)])
        except RuntimeError as exc:
            raise AnnotationError(ErrorCode.MODEL_ERROR, f"DistillMOS failed: {exc}") from exc
        return {"mos": float(scores.mean()), "n_windows": len(batch)}
