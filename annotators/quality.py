"""Quality: DNSMOS P.835 (`sig`, `bak`, `ovrl`), P.808 (`p808`) and PLCMOS v2 (`plcmos`) from the ONNX
models speechmos ships.

PLCMOS averages its model over `plcmos_rounds` random "rater" embeddings; speechmos draws them from the
global numpy generator, so the same audio gets another score each run. Here they come from a fixed seed
(one draw per worker), so a rerun gives the same score. It scores the same windows as DNSMOS, up to
PLC_WINDOWS of them per call (a longer file's score is the calls' mean).

speechmos scores a 9.01 s window slid by 1 s, which is 9x the work for nearly the same mean. Here the
windows do not overlap (the last one is aligned to the end; clips shorter than a window are tiled, as
speechmos does) and long files are sampled (`coverage`): a long recording's windows are centred in the
clips it is cut into (annotators.cutting), so that the clips annotator reads their scores instead of
scoring those clips again, topped up with evenly spaced windows; a file without clips, or scored at full
coverage, gets evenly spaced windows. Windows go through the model one at a time on CPU (batching
gained no speed there, and onnxruntime's working memory grows with every window in a call),
WINDOWS_PER_CALL at a time on a GPU. onnxruntime is held to the task's threads and runs without its
memory arena (which would keep the largest call's memory for the life of the worker). Feature
extraction and score polynomials are speechmos's own.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from annotators import speechmos_internals as sm
from annotators.base import WINDOW_SCORE, AnnotationError, Annotator, AudioItem, Resources
from annotators.cutting import placed_window_starts
from annotators.onnx import session_options
from schemas.errors import ErrorCode

WINDOW_S = 9.01
SR = 16000
MIN_S = 1.0
WINDOWS_PER_CALL = 16  # on a GPU
PLC_WINDOWS = 8  # windows per PLCMOS call (72 s): files with more scored windows average the calls


def window_starts(n_samples: int, coverage: float = 1.0) -> list[int]:
    """Where the non-overlapping 9.01 s windows of a signal this long start (the last aligned to the end),
    evenly thinned to `coverage`; [] when it is shorter than a window (it is tiled to one)."""
    n = int(WINDOW_S * SR)
    if n_samples < n:
        return []
    starts = list(range(0, n_samples - n + 1, n))
    if n_samples - (starts[-1] + n) > n // 2:
        starts.append(n_samples - n)
    keep = _keep(n_samples, coverage)
    if keep < len(starts):
        starts = [starts[int(i)] for i in np.linspace(0, len(starts) - 1, keep).round()]
    return starts


def _keep(n_samples: int, coverage: float) -> int:
    """How many windows `coverage` of a signal this long asks for."""
    return max(1, int(np.ceil(coverage * n_samples / int(WINDOW_S * SR))))


def _windows(x: np.ndarray, coverage: float = 1.0, starts: list[int] | None = None) -> list[np.ndarray]:
    """The windows at `starts` (default: window_starts); a clip shorter than a window: tiled to one, as
    speechmos does."""
    n = int(WINDOW_S * SR)
    if len(x) < n:
        reps = int(np.ceil(n / max(len(x), 1)))
        return [np.tile(x, reps)[:n]]
    return [x[s: s + n] for s in (window_starts(len(x), coverage) if starts is None else starts)]


def centred_windows(x: np.ndarray, size: int, count: int) -> list[np.ndarray]:
    """`count` windows of `size` samples spread evenly over x (one: the centre), or x itself when shorter."""
    if len(x) <= size:
        return [x]
    starts = [int(round((len(x) - size) * (k + 0.5) / count)) for k in range(count)] if count > 1 \
        else [(len(x) - size) // 2]
    return [x[s: s + size] for s in starts]


class P835:
    """DNSMOS P.835 alone (sig, bak, ovrl) over a few windows of a stretch of audio: how the clips annotator
    scores a clip of a long recording on its own span (P.808 and PLCMOS stay per file)."""

    def __init__(self, personalized: bool = False, threads: int = 1):
        import onnxruntime as ort

        self.personalized = personalized
        self._features = sm.DnsmosFeatures()
        self._session = ort.InferenceSession(
            sm.model_file("dnsmos_personalized" if personalized else "dnsmos"), session_options(threads),
            providers=["CPUExecutionProvider"])

    def score(self, x: np.ndarray, max_windows: int = 1) -> tuple[float, float, float] | None:
        """(sig, bak, ovrl), the means over up to `max_windows` windows spread over x (a span shorter than a
        window is tiled to one, as speechmos does); None for less than MIN_S of audio."""
        if len(x) < MIN_S * SR:
            return None
        n = int(WINDOW_S * SR)
        raw = []
        for w in centred_windows(x, n, max_windows):
            w = _windows(w)[0] if len(w) < n else w
            try:
                raw.append(self._session.run(None, {"input_1": np.clip(w, -1.0, 1.0).astype(np.float32)[None, :]})[0][0])
            except Exception as exc:  # the model's failure, not the audio's
                raise AnnotationError(ErrorCode.MODEL_ERROR, f"DNSMOS failed: {exc}") from exc
        raw = np.array(raw)
        sig, bak, ovr = self._features.polyfit(raw[:, 0], raw[:, 1], raw[:, 2], self.personalized)
        return float(np.mean(sig)), float(np.mean(bak)), float(np.mean(ovr))


class Quality(Annotator):
    name = "quality"
    expensive = True  # DNSMOS/PLCMOS neural models; a long file's windows are placed by asr's words
    # 1.1: plcmos; 1.2: PLCMOS of long files over groups of PLC_WINDOWS windows; 1.3: a long recording's
    # windows in its clips
    version = "1.3.0"
    resources = Resources(cpu_threads=1, gpu=True)
    uses = ("vad", "asr", "speakers")  # where a long recording's clips are (cutting.placed_window_starts)
    # Every 9 s window costs DNSMOS, P.808 and PLCMOS (BENCHMARKS.md, "Annotators"). `coverage` scores
    # that share of a long file: windows centred in its clips (annotators.cutting), topped up with evenly
    # spaced ones; clips up to about 2 windows long are always scored whole. Set coverage: 1.0 for every
    # window.
    default_params = {"personalized": False, "coverage": 0.3, "plcmos_rounds": 5}
    fields = [
        pa.field("sig", pa.float64()),
        pa.field("bak", pa.float64()),
        pa.field("ovrl", pa.float64()),
        pa.field("p808", pa.float64()),
        pa.field("n_windows", pa.int32()),
        pa.field("plcmos", pa.float64()),
        # each scored window's start and P.835 overall score (a recording shorter than a window has none): a
        # clip that holds one of them reads its DNSMOS from them (annotators.clips). Rows written before
        # this field existed have it null.
        pa.field("windows", pa.list_(WINDOW_SCORE)),
    ]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        import onnxruntime as ort

        primary = sm.model_file("dnsmos_personalized" if self.params["personalized"] else "dnsmos")
        opts = session_options(threads)
        providers = ["CPUExecutionProvider"]
        self.windows_per_call = 1
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [("CUDAExecutionProvider", {"device_id": device_index}), "CPUExecutionProvider"]
            self.windows_per_call = WINDOWS_PER_CALL
        else:  # onnxruntime without CUDA: the models run on the host (and in the host's lane of a GPU task)
            self.device = "cpu"
        self._dnsmos = sm.DnsmosFeatures()  # its melspec and polynomials, with our sessions
        self._primary = ort.InferenceSession(primary, opts, providers=providers)
        self._p808 = ort.InferenceSession(sm.model_file("p808"), opts, providers=providers)
        self._plc = sm.PlcmosFeatures()  # its STFT features, with our session and seeded raters
        self._plc_session = ort.InferenceSession(sm.model_file("plcmos"), opts, providers=providers)
        self._raters = np.random.default_rng(20230820).normal(
            size=(self.params["plcmos_rounds"], 1, 64)).astype(np.float32)

    def annotate_batch(self, items: list[AudioItem]) -> list[dict]:
        results: list[dict | None] = [None] * len(items)
        windows, owner, plc_input, starts = [], [], {}, {}
        for i, item in enumerate(items):
            if item.duration_s < MIN_S:
                results[i] = self.result("failed", ErrorCode.TOO_SHORT, f"DNSMOS needs at least {MIN_S} s")
                continue
            x = item.samples  # windows are views: each is clipped to [-1, 1] when it is scored
            coverage = self.params["coverage"]
            starts[i] = placed_window_starts(item, int(WINDOW_S * SR), _keep(len(x), coverage),
                                             window_starts(len(x), coverage), coverage)
            mine = _windows(x, starts=starts[i])
            for w in mine:
                windows.append(w)
                owner.append(i)
            # PLCMOS reads any length: the clip itself when short (not tiled), else the scored windows
            plc_input[i] = [x] if len(x) <= len(mine[0]) else mine
        if windows:
            step = self.windows_per_call
            scores = np.concatenate([self._score(np.clip(np.stack(windows[k: k + step]), -1.0, 1.0)
                                                 .astype(np.float32)) for k in range(0, len(windows), step)])
            owner_arr = np.array(owner)
            for i in set(owner):
                mine = scores[owner_arr == i]
                s = mine.mean(axis=0)
                results[i] = self.ok(sig=float(s[0]), bak=float(s[1]), ovrl=float(s[2]), p808=float(s[3]),
                                     plcmos=self._plcmos(plc_input[i]), n_windows=len(mine),
                                     windows=[{"start_s": a / SR, "score": float(w[2])}  # none when tiled
                                              for a, w in zip(starts[i], mine, strict=True)] if starts[i] else [])
        return results

    def _score(self, batch: np.ndarray) -> np.ndarray:
        try:
            raw = self._primary.run(None, {"input_1": batch})[0]
            mels = np.stack([self._dnsmos.p808_melspec(w[:-160]) for w in batch]).astype(np.float32)
            p808 = self._p808.run(None, {"input_1": mels})[0][:, 0]
        except Exception as exc:  # onnxruntime errors on a batch are model errors, not bad audio
            raise AnnotationError(ErrorCode.MODEL_ERROR, f"DNSMOS failed: {exc}") from exc
        sig, bak, ovr = self._dnsmos.polyfit(raw[:, 0], raw[:, 1], raw[:, 2], self.params["personalized"])
        return np.stack([sig, bak, ovr, p808], axis=1)

    def _plcmos(self, pieces: list[np.ndarray]) -> float:
        """PLCMOS of the scored windows, PLC_WINDOWS at a time (their mean, weighted by length): its
        working memory grows with the input (GBs for the windows of an hours-long file in one call)."""
        scores, weights = [], []
        for k in range(0, len(pieces), PLC_WINDOWS):
            audio = np.clip(np.concatenate(pieces[k: k + PLC_WINDOWS]), -1.0, 1.0)
            feats = np.float32(self._plc.stft(audio))[np.newaxis, np.newaxis, ...]
            try:
                scores.append(np.mean([self._plc_session.run(None, {"degraded_audio": feats, "rater_embed": r})[0]
                                       for r in self._raters]))
            except Exception as exc:
                raise AnnotationError(ErrorCode.MODEL_ERROR, f"PLCMOS failed: {exc}") from exc
            weights.append(len(audio))
        return float(np.average(scores, weights=weights))
