"""ASR with faster-whisper (CTranslate2): transcript, language, every confidence, segments, word timings.

The files of a batch are decoded together (`annotators.whisper_batch`: faster-whisper's per-file loop in
lock step, `batch_size` windows per model call), which gives the unbatched path's transcripts at a
fraction of its encoder and beam-search calls.

Keeps what most wrappers drop, since these are the cheapest hallucination and language-error detectors:
per segment `avg_logprob`, `no_speech_prob`, `compression_ratio`, `temperature` (the fallback used) and
per word `probability`; per file the top language probabilities. Lineage columns say exactly which
weights (`model_sha256`) and settings (`options_hash`) produced the row.
"""
from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from annotators.base import FAILED, OK, SKIPPED, Annotator, AudioItem, Resources, params_hash
from annotators.whisper_features import as_int16_grid
from annotators.whisper_pack import PackSettings, transcribe_packed
from schemas.errors import ErrorCode

log = logging.getLogger(__name__)

WORD = pa.struct([
    pa.field("word", pa.string()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("probability", pa.float64()),
])
SEGMENT = pa.struct([
    pa.field("id", pa.int32()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("text", pa.string()),
    pa.field("avg_logprob", pa.float64()),
    pa.field("no_speech_prob", pa.float64()),
    pa.field("compression_ratio", pa.float64()),
    pa.field("temperature", pa.float64()),
    pa.field("words", pa.list_(WORD)),
])
LANG_PROB = pa.struct([pa.field("language", pa.string()), pa.field("prob", pa.float64())])

# Options passed to faster-whisper's transcribe(); all of them enter options_hash.
DECODE_OPTIONS = ("beam_size", "temperature", "condition_on_previous_text", "word_timestamps",
                  "no_speech_threshold", "log_prob_threshold", "compression_ratio_threshold")


MIN_SAMPLES = 400  # 25 ms at 16 kHz: one Whisper analysis window


class Asr(Annotator):
    name = "asr"
    expensive = True  # the costliest: a Whisper decode of every 30 s window
    version = "1.1.0"  # 1.1: files decoded in cross-file batches
    resources = Resources(cpu_threads=2, gpu=True)
    uses = ("vad",)  # with VAD results, files without speech are not transcribed (no hallucinations)
    default_params = {
        "model": "base",  # multilingual: language ID needs it; 'tiny.en' or a local folder by config
        "compute_type": "int8",  # on CPU; a GPU task uses gpu_compute_type
        "gpu_compute_type": "float16",
        "beam_size": 5,
        "temperature": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        "condition_on_previous_text": False,  # True skipped repeated content in STACK_NOTES' tests
        "word_timestamps": True,
        "no_speech_threshold": 0.6,
        "log_prob_threshold": -1.0,
        "compression_ratio_threshold": 2.4,
        "top_languages": 5,
        "language": None,  # force a language (skips detection)
        "cache_dir": ".deps/models",
        "allow_download": False,
        "min_speech_s": 0.3,  # skip (NO_SPEECH) when the VAD found less speech than this
        "batch_size": 4,  # 30 s windows (of different files) per encoder/decoder call on CPU
        "gpu_batch_size": 16,  # ... on a GPU
        # Short clips of one language share a 30 s window (annotators.whisper_pack). Off: on the corpus it
        # moved boundary words between clips (BENCHMARKS.md, "packing short clips").
        "pack_short_clips": False,
    }
    fields = [
        pa.field("language", pa.string()),
        pa.field("language_prob", pa.float64()),
        pa.field("language_top", pa.list_(LANG_PROB)),
        pa.field("text", pa.string()),
        pa.field("segments", pa.list_(SEGMENT)),
        pa.field("n_segments", pa.int32()),
        pa.field("mean_avg_logprob", pa.float64()),
        pa.field("max_no_speech_prob", pa.float64()),
        pa.field("max_compression_ratio", pa.float64()),
        pa.field("model", pa.string()),
        pa.field("model_path", pa.string()),
        pa.field("model_sha256", pa.string()),
        pa.field("compute_type", pa.string()),
        pa.field("beam_size", pa.int32()),
        pa.field("device", pa.string()),
        pa.field("options_hash", pa.string()),
    ]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        from faster_whisper import WhisperModel

        from annotators.models import resolve_whisper
        from annotators.whisper_batch import BatchedWhisper

        self.resolved = resolve_whisper(self.params["model"], self.params["cache_dir"],
                                        allow_download=self.params["allow_download"])
        self.compute_type = self.params["gpu_compute_type"] if device == "cuda" else self.params["compute_type"]
        self.model = WhisperModel(self.resolved.path, device=device, device_index=device_index,
                                  compute_type=self.compute_type, cpu_threads=threads, num_workers=1)
        self.options = {k: self.params[k] for k in DECODE_OPTIONS}
        self.options_hash = params_hash({**self.options, "language": self.params["language"],
                                         "pack_short_clips": self.params["pack_short_clips"]})
        size = self.params["gpu_batch_size" if device == "cuda" else "batch_size"]
        self.batched = BatchedWhisper(self.model, self.options, size)
        log.info("asr: loaded %s (%s, %s) from %s", self.resolved.name, device, self.compute_type,
                 self.resolved.path)

    def annotate_batch(self, items: list[AudioItem]) -> list[dict]:
        """All files that have speech go through one lock-step batched decode; if the model fails on the
        batch, each file is decoded alone so that the failure stays with the file that caused it."""
        results: list[dict | None] = [None] * len(items)
        todo = []
        for k, item in enumerate(items):
            vad = item.upstream.get("vad")
            if vad and vad.get("status") == OK and vad["speech_s"] < self.params["min_speech_s"]:
                results[k] = self.result(SKIPPED, ErrorCode.NO_SPEECH, f"VAD found {vad['speech_s']:.2f} s of speech")
            elif len(item.samples) < MIN_SAMPLES:  # not one Whisper frame pair: nothing to transcribe
                results[k] = self.result(SKIPPED, ErrorCode.NO_SPEECH, f"{item.duration_s * 1000:.0f} ms of audio")
            else:
                todo.append(k)
        for k, result in zip(todo, self._transcribe([items[k] for k in todo]), strict=True):
            results[k] = result
        return results

    def _transcribe(self, items: list[AudioItem]) -> list[dict]:
        if not items:
            return []
        # BatchedWhisper rounds to 16-bit steps a stretch at a time (no second copy of a long file's
        # signal: 659 MiB for three hours); packing joins short clips, rounded here first
        pack = self.params["pack_short_clips"]
        audios = [as_int16_grid(i.samples) if pack else i.samples for i in items]
        languages = [self.params["language"]] * len(items)
        try:
            if pack:
                decoded = transcribe_packed(self.batched, audios, languages, PackSettings())
            else:
                decoded = self.batched.transcribe(audios, languages)
        except (RuntimeError, ValueError) as exc:  # CTranslate2 / tokenizer failures on this input
            if len(items) > 1:
                log.warning("asr: batched decoding of %d files failed (%s); decoding them one by one", len(items), exc)
                return [r for item in items for r in self._transcribe([item])]
            return [self.result(FAILED, ErrorCode.MODEL_ERROR, f"faster-whisper failed: {exc}")]
        return [self.ok(**self.to_result(segments, info)) for segments, info in decoded]

    def to_result(self, segments, info) -> dict:
        rows = [
            {
                "id": int(s.id),
                "start_s": float(s.start),
                "end_s": float(s.end),
                "text": s.text.strip(),
                "avg_logprob": float(s.avg_logprob),
                "no_speech_prob": float(s.no_speech_prob),
                "compression_ratio": float(s.compression_ratio),
                "temperature": float(s.temperature) if s.temperature is not None else None,
                "words": [
                    {"word": w.word.strip(), "start_s": float(w.start), "end_s": float(w.end),
                     "probability": float(w.probability)}
                    for w in (s.words or [])
                ],
            }
            for s in segments
        ]
        top = sorted(info.all_language_probs or [], key=lambda t: -t[1])[: self.params["top_languages"]]
        return {
            "language": info.language,
            "language_prob": float(info.language_probability),
            "language_top": [{"language": lang, "prob": float(p)} for lang, p in top],
            "text": " ".join(r["text"] for r in rows if r["text"]).strip(),
            "segments": rows,
            "n_segments": len(rows),
            "mean_avg_logprob": float(np.mean([r["avg_logprob"] for r in rows])) if rows else None,
            "max_no_speech_prob": max((r["no_speech_prob"] for r in rows), default=None),
            "max_compression_ratio": max((r["compression_ratio"] for r in rows), default=None),
            "model": self.resolved.name,
            "model_path": self.resolved.path,
            "model_sha256": self.resolved.sha256,
            "compute_type": self.compute_type,
            "beam_size": int(self.params["beam_size"]),
            "device": self.device,
            "options_hash": self.options_hash,
        }
