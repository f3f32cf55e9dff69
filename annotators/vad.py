"""VAD: speech segments, speech seconds and speech ratio from Silero VAD v6, in ONNX, without torch.

faster-whisper ships Silero VAD v6 as ONNX together with a numpy implementation of silero-vad's
`get_speech_timestamps` that scores all 32 ms windows of a file in one onnxruntime call. Using it here
(instead of the silero-vad package, whose wrapper needs torch) keeps torch out of CPU workers (the
annotators bench: 84 MiB added at setup, against 523 MiB with the silero-vad package);
bench/vad_bench.py measures how closely the two agree on the corpus.
"""
from __future__ import annotations

import pyarrow as pa

from annotators.base import Annotator, AudioItem, Resources

SEGMENT = pa.struct([pa.field("start_s", pa.float64()), pa.field("end_s", pa.float64())])


class Vad(Annotator):
    name = "vad"
    version = "1.1.0"  # 1.1: faster-whisper's ONNX Silero v6 without torch (was the silero-vad package)
    resources = Resources(cpu_threads=1)
    default_params = {
        "threshold": 0.5,
        "min_speech_ms": 250,
        "min_silence_ms": 100,
        "speech_pad_ms": 30,
    }
    fields = [
        pa.field("speech_segments", pa.list_(SEGMENT)),
        pa.field("speech_s", pa.float64()),
        pa.field("speech_ratio", pa.float64()),
        pa.field("n_segments", pa.int32()),
    ]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        from faster_whisper.vad import VadOptions, get_vad_model

        get_vad_model()  # loads the ONNX session once per worker (faster-whisper caches it)
        self.options = VadOptions(
            threshold=self.params["threshold"],
            min_speech_duration_ms=self.params["min_speech_ms"],
            min_silence_duration_ms=self.params["min_silence_ms"],
            speech_pad_ms=self.params["speech_pad_ms"],
        )

    def annotate(self, item: AudioItem) -> dict:
        from faster_whisper.vad import get_speech_timestamps

        sr = item.sample_rate
        stamps = get_speech_timestamps(item.samples, self.options, sampling_rate=sr) if len(item.samples) else []
        segments = [{"start_s": s["start"] / sr, "end_s": s["end"] / sr} for s in stamps]
        speech = sum(s["end_s"] - s["start_s"] for s in segments)
        return {
            "speech_segments": segments,
            "speech_s": speech,
            "speech_ratio": speech / item.duration_s if item.duration_s > 0 else None,
            "n_segments": len(segments),
        }


def speech_mask(n_samples: int, rate: int, segments: list[dict]):
    """Boolean mask of the samples inside VAD segments (used by snr, pitch and text)."""
    import numpy as np

    mask = np.zeros(n_samples, dtype=bool)
    for seg in segments or []:
        mask[int(seg["start_s"] * rate): int(seg["end_s"] * rate)] = True
    return mask
