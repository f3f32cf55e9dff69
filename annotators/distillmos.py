"""DistillMOS: a second, independent MOS opinion (Stahl & Gamper, 2025; MIT), weights inside its wheel.

A small convolution + transformer model distilled from an XLS-R based quality model, scoring 7.68 s
windows of 16 kHz audio (1-5). The package's own forward pass slides its window by 1 s (about 8x the
work); here the windows do not overlap (the last is aligned to the end, a short clip is zero-padded as
the package does), long files are sampled (`coverage`: windows centred in the clips the recording is
cut into, so that the clips annotator reads their scores; annotators.cutting), the windows go through
the model a few at a time, and the file's score is their mean. On a GPU task it runs in torch; on CPU
in onnxruntime, from an export of the model made once (annotators.torch_exports), after a numpy copy of
its spectral front end: a CPU worker then never imports torch.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pyarrow as pa

from annotators.base import WINDOW_SCORE, AnnotationError, Annotator, AudioItem, Resources
from annotators.cutting import placed_window_starts
from annotators.distillmos_frontend import WINDOW, compressed_spectra
from annotators.torch_exports import cpu_session
from schemas.errors import ErrorCode

SR = 16000
MIN_S = 1.0
WINDOWS_PER_CALL = 4  # per forward pass on CPU (its activations grow with each window)
WINDOWS_PER_CALL_GPU = 24


def window_starts(n_samples: int, max_windows: int, coverage: float = 1.0) -> list[int]:
    """Where the non-overlapping model windows start (the last aligned to the end), evenly thinned to
    `coverage` of the audio and at most max_windows; [] for audio no longer than one window (padded)."""
    if n_samples <= WINDOW:
        return []
    starts = list(range(0, n_samples - WINDOW + 1, WINDOW))
    if starts[-1] + WINDOW < n_samples:
        starts.append(n_samples - WINDOW)
    keep = _keep(n_samples, max_windows, coverage)
    if len(starts) > keep:
        starts = [starts[int(i)] for i in np.linspace(0, len(starts) - 1, keep).round()]
    return starts


def _keep(n_samples: int, max_windows: int, coverage: float) -> int:
    """How many windows `coverage` of audio this long asks for (at least 2, at most max_windows)."""
    return min(max_windows, max(2, int(np.ceil(coverage * n_samples / WINDOW))))


def windows(x: np.ndarray, max_windows: int, coverage: float = 1.0, starts: list[int] | None = None) -> np.ndarray:
    """The windows at `starts` (default: window_starts); audio no longer than a window: zero-padded to one,
    as the package does."""
    if len(x) <= WINDOW:
        return np.pad(x, (0, WINDOW - len(x)))[None, :]
    starts = window_starts(len(x), max_windows, coverage) if starts is None else starts
    return np.stack([x[s: s + WINDOW] for s in starts])


def score_windows(run, batch: np.ndarray, per_call: int) -> np.ndarray:
    """The model's score of each window of `batch`, `per_call` windows per call of `run` (the activations of
    many windows in one call take GBs on CPU)."""
    batch = np.clip(batch, -1.0, 1.0).astype(np.float32)
    try:
        return np.concatenate([run(batch[k: k + per_call]) for k in range(0, len(batch), per_call)])
    except Exception as exc:  # torch's RuntimeError, onnxruntime's errors: the model's, not the audio's
        raise AnnotationError(ErrorCode.MODEL_ERROR, f"DistillMOS failed: {exc}") from exc


def onnx_scorer(session):
    """`run` for score_windows from an onnxruntime session of the export (the CPU path)."""
    return lambda batch: session.run(None, {"spectra": compressed_spectra(batch)})[0].ravel()


class DistillMos(Annotator):
    name = "distillmos"
    expensive = True  # a neural MOS model over the file's windows
    # 1.1: onnxruntime on CPU (within 1.8e-4 of torch's scores on the corpus); 1.2: a long recording's
    # windows in its clips
    version = "1.2.0"
    resources = Resources(cpu_threads=1, gpu=True)
    uses = ("vad", "asr", "speakers")  # where a long recording's clips are (cutting.placed_window_starts)
    # Each window costs a model pass (BENCHMARKS.md, "Annotators"): like DNSMOS, long files are scored
    # on windows over `coverage` of their length (at least 2, at most max_windows), centred in their clips
    # (annotators.cutting) and topped up with evenly spaced ones
    default_params = {"coverage": 0.3, "max_windows": 24, "cache_dir": ".deps/models"}
    # `windows`: each scored window's start and score (none for audio no longer than a window): a clip that
    # holds one of them reads its DistillMOS from them (annotators.clips); null in rows written before it
    fields = [pa.field("mos", pa.float64()), pa.field("n_windows", pa.int32()),
              pa.field("windows", pa.list_(WINDOW_SCORE))]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        self._per_call = WINDOWS_PER_CALL_GPU if device == "cuda" else WINDOWS_PER_CALL
        if device != "cuda":
            self._session = cpu_session("distillmos", self.params["cache_dir"], threads)
            self._model = None
            return
        import torch
        from distillmos import ConvTransformerSQAModel

        with contextlib.redirect_stdout(io.StringIO()):  # it prints where its weights came from
            model = ConvTransformerSQAModel(segmenting_in_forward=False)
        self._device = torch.device(f"cuda:{device_index}")
        self._model = model.eval().to(self._device)

    def _scores(self, batch: np.ndarray) -> np.ndarray:
        if self._model is None:
            return onnx_scorer(self._session)(batch)
        import torch

        with torch.no_grad():
            return self._model(torch.from_numpy(batch).to(self._device)).float().cpu().numpy().ravel()

    def annotate(self, item: AudioItem) -> dict:
        if item.duration_s < MIN_S:
            raise AnnotationError(ErrorCode.TOO_SHORT, f"DistillMOS needs at least {MIN_S} s")
        # windows first, then the clip and cast: on the windows, not on a copy of the whole file
        n, most, coverage = len(item.samples), self.params["max_windows"], self.params["coverage"]
        starts = placed_window_starts(item, WINDOW, _keep(n, most, coverage), window_starts(n, most, coverage),
                                      coverage)
        batch = windows(item.samples, self.params["max_windows"], starts=starts)
        scores = score_windows(self._scores, batch, self._per_call)
        return {"mos": float(scores.mean()), "n_windows": len(batch),
                "windows": [{"start_s": a / SR, "score": float(v)}  # none when padded to one window
                            for a, v in zip(starts, scores, strict=True)] if starts else []}
