"""Clips: a recording cut into training clips, each measured on its own span.

Where a clip may start or end: only in a pause, never inside a word. The units are the ASR words (the VAD's
speech segments when there are no words: the clips then have no text and fail the gate's text checks).
A recording is first split into passages wherever two units are at least `split_pause_s` apart (a long
pause, music, noise) or, with `split_on_speaker_change`, where the speaker label (`speakers`' turns at
each word's midpoint) changes. Each passage is then cut at the pauses between its words (gaps of at least
`min_pause_s`) by a shortest-path search over the allowed cut points (dynamic programming, linear in the
words times the words a clip can hold): a cut after a sentence end (terminal punctuation) costs
nothing, any other pause costs more the shorter it is, every clip costs a little (so sentences are joined
up to `max_s` rather than cut apart), and a clip outside [`min_s`, `max_s`] costs so much that it is
chosen only when the passage allows nothing else (the gate then rejects it). A clip reaches `pad_s` into
the silence on each side (half the pause at most, so neighbours never overlap), and up to SNAP_S further
where the VAD heard speech begin before the first word's timestamp or end after the last one's
(Whisper's word timings are often a little late at the start and early at the end).

A recording no longer than `max_s` is one clip spanning the whole file, not trimmed: its measures are the
file's own results, copied, so a short file is judged exactly as it was before clips existed. So is a
longer recording with nothing to cut (no words and no VAD speech: music, noise, silence): its one clip
fails the gate for what it is (`music_ceiling`, `speech_ratio_floor`, `clip_duration`...).

Every other clip is measured on its span while the decoded audio is in memory: speech ratio (the VAD
segments inside it), SNR (annotators.snr on the span), DNSMOS P.835 and DistillMOS: the mean of the file-level
annotators' scored windows that lie inside the span (they centre a long recording's windows in the clips the
shipped rules cut: annotators.cutting.clip_window_starts), else (annotators.quality.P835, and the
DistillMOS model) `mos_windows` model windows spread over the span (the centre window by default, the
whole clip when it is shorter than a window; BENCHMARKS.md, "Training clips", has what the clip step
costs), clipping (the native samples of the span), music ratio (the
events annotator's patches whose centre lies in the span), speaker label and purity (the speakers
annotator's turns over the span: the share of the span's labelled speech by its main label), and from the
words inside it: text, word timings relative to the clip, mean word probability, the ASR segments' log
probability (weighted by overlap) and compression ratio, words per second of speech, PII (the text
annotator's findings whose span overlaps), the hallucination checks and a text-side language opinion
(lingua) that flags a clip in another language than the file's. A value whose annotator did not run or
did not succeed on the file is null (the gate's "measured" expectations then fail).
"""
from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pyarrow as pa

from annotators.asr import WORD
from annotators.base import Annotator, AudioItem, Resources
from annotators.clip_rules import Rules
from annotators.cutting import Inputs, Unit, cut, units_of
from annotators.cutting import ok_result as _ok
from annotators.distillmos import WINDOW, WINDOWS_PER_CALL, score_windows, windows
from annotators.events import MUSIC, PATCH_HOP_S, PATCH_S
from annotators.levels import Levels
from annotators.quality import WINDOW_S, centred_windows
from annotators.snr import Snr, measure_snr
from annotators.text import NO_WORD_BOUNDARY_LANGS, Text, normalize, repeated_ngrams, text_language

SR = 16000

CLIP = pa.struct([
    pa.field("clip_index", pa.int32()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
    pa.field("duration_s", pa.float64()),
    pa.field("whole_file", pa.bool_()),
    pa.field("text", pa.string()),
    pa.field("words", pa.list_(WORD)),
    pa.field("n_words", pa.int32()),
    pa.field("language", pa.string()),
    pa.field("language_prob", pa.float64()),
    pa.field("language_agrees", pa.bool_()),
    pa.field("mean_word_prob", pa.float64()),
    pa.field("avg_logprob", pa.float64()),
    pa.field("max_compression_ratio", pa.float64()),
    pa.field("speech_ratio", pa.float64()),
    pa.field("snr_db", pa.float64()),
    pa.field("dnsmos_ovrl", pa.float64()),
    pa.field("distillmos", pa.float64()),
    pa.field("music_ratio", pa.float64()),
    pa.field("clipping_ratio", pa.float64()),
    pa.field("speaker_label", pa.int32()),
    pa.field("speaker_purity", pa.float64()),
    pa.field("n_speakers", pa.int32()),
    pa.field("words_per_s", pa.float64()),
    pa.field("has_pii", pa.bool_()),
    pa.field("hallucination", pa.bool_()),
])


# A whole-file clip's measures that are the file's own results of a cheap annotator, as clip column ->
# (annotator, field): the cascade's clip checks read the same fields before the clip exists.
WHOLE_FILE_MEASURES = {"speech_ratio": ("vad", "speech_ratio"), "snr_db": ("snr", "snr_db"),
                       "music_ratio": ("events", "music_ratio"), "clipping_ratio": ("levels", "clipping_ratio")}


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def speaker_share(turns: list[dict], start: float, end: float) -> tuple[int | None, float | None, int]:
    """(main label, its share of the span's labelled speech, labels holding at least 5 % of it)."""
    by_label: dict[int, float] = {}
    for t in turns:
        o = overlap(t["start_s"], t["end_s"], start, end)
        if o > 0:
            by_label[int(t["speaker"])] = by_label.get(int(t["speaker"]), 0.0) + o
    total = sum(by_label.values())
    if total <= 0:
        return None, None, 0
    main = max(by_label, key=lambda k: (by_label[k], -k))
    return main, by_label[main] / total, sum(1 for v in by_label.values() if v / total >= 0.05)


class Clips(Annotator):
    name = "clips"
    expensive = False  # runs on every file (the gate judges clips); on a gated file it measures only cheap values
    version = "1.0.0"
    resources = Resources(cpu_threads=1)
    # what a clip is measured with, each read when configured (ordered before this one)
    uses = ("levels", "vad", "snr", "quality", "distillmos", "events", "speakers", "asr", "text")
    # the cutting rules come from the config's `clips:` section (jobs.config); cache_dir: distillmos's export
    default_params = {**asdict(Rules()),
                      "mos_windows": 1,  # DNSMOS and DistillMOS windows per clip, spread over it (the centre one)
                      "cache_dir": ".deps/models"}
    fields = [
        pa.field("clips", pa.list_(CLIP)),
        pa.field("n_clips", pa.int32()),
        pa.field("clips_s", pa.float64()),  # the clips' total duration
    ]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup("cpu", device_index, threads)
        self.rules = Rules(**{k: self.params[k] for k in Rules.__dataclass_fields__})
        self._p835 = self._distill = self._detector = None  # loaded on the first long file

    def _models(self):
        if self._p835 is None:
            from annotators.distillmos import onnx_scorer
            from annotators.quality import P835
            from annotators.text import language_detector
            from annotators.torch_exports import cpu_session

            self._p835 = P835(threads=self.threads)
            self._distill = onnx_scorer(cpu_session("distillmos", self.params["cache_dir"], self.threads))
            self._detector = language_detector(True)

    def annotate(self, item: AudioItem) -> dict:
        duration = item.duration_s
        got = Inputs.of(item)
        speech, words, turns = got.speech, got.words, got.turns
        if duration <= self.rules.max_s:
            clips = [self._whole(item, words, turns)]
        else:
            self._models()
            units = units_of(words, speech, turns, self.rules.split_pause_s)
            clips = [self._measure(item, k, start, end, [units[i] for i in members], speech, turns)
                     for k, (start, end, members) in enumerate(cut(units, speech, duration, self.rules))]
            if not clips:  # nothing to cut (no words, no speech): judged whole, for the reasons it fails
                clips = [self._whole(item, words, turns)]
        return {"clips": clips, "n_clips": len(clips), "clips_s": float(sum(c["duration_s"] for c in clips))}

    def _whole(self, item: AudioItem, words: list[dict], turns: list[dict]) -> dict:
        """The whole file as one clip, with the file's own results."""
        up = {n: _ok(item, n) or {} for n in ("vad", "snr", "quality", "distillmos", "events", "levels", "asr",
                                              "text")}
        asr, text = up["asr"], up["text"]
        label, purity, n_speakers = speaker_share(turns, 0.0, item.duration_s)
        probs = [w["probability"] for w in words if w.get("probability") is not None]
        return {
            "clip_index": 0, "start_s": 0.0, "end_s": item.duration_s, "duration_s": item.duration_s,
            "whole_file": True, "text": (asr.get("text") or "").strip() or None,
            "words": [_word(w, 0.0) for w in words], "n_words": len(words),
            "language": asr.get("language"), "language_prob": asr.get("language_prob"),
            "language_agrees": text.get("language_agrees"),
            "mean_word_prob": float(np.mean(probs)) if probs else None,
            "avg_logprob": asr.get("mean_avg_logprob"), "max_compression_ratio": asr.get("max_compression_ratio"),
            **{column: up[name].get(field) for column, (name, field) in WHOLE_FILE_MEASURES.items()},
            "dnsmos_ovrl": up["quality"].get("ovrl"), "distillmos": up["distillmos"].get("mos"),
            "speaker_label": label, "speaker_purity": purity, "n_speakers": n_speakers if turns else None,
            "words_per_s": text.get("words_per_s"), "has_pii": text.get("has_pii"),
            "hallucination": text.get("hallucination"),
        }

    def _measure(self, item: AudioItem, index: int, start: float, end: float, units: list[Unit],
                 speech: list[dict], turns: list[dict]) -> dict:
        """One clip of a long recording, measured on its own span."""
        duration = end - start
        x = item.samples[int(start * SR): int(end * SR)]
        vad, asr, text_result = _ok(item, "vad"), _ok(item, "asr"), _ok(item, "text")
        local = [{"start_s": max(s["start_s"], start) - start, "end_s": min(s["end_s"], end) - start}
                 for s in speech if overlap(s["start_s"], s["end_s"], start, end) > 0]
        speech_s = sum(s["end_s"] - s["start_s"] for s in local)
        words = [dict(u.word, start_s=u.start, end_s=u.end) for u in units if u.word]  # trimmed to speech
        language = (asr or {}).get("language")
        joiner = "" if language in NO_WORD_BOUNDARY_LANGS else " "
        text = joiner.join(w["word"] for w in words).strip() or None
        segments = (asr or {}).get("segments") or []
        weights = [(overlap(s["start_s"], s["end_s"], start, end), s) for s in segments]
        weights = [(o, s) for o, s in weights if o > 0]
        avg_logprob = (sum(o * s["avg_logprob"] for o, s in weights) / sum(o for o, _ in weights)) if weights else None
        compression = max((s["compression_ratio"] for _, s in weights), default=None)
        probs = [w["probability"] for w in words if w.get("probability") is not None]
        out = {
            "clip_index": index, "start_s": start, "end_s": end, "duration_s": duration, "whole_file": False,
            "text": text, "words": [_word(w, start) for w in words], "n_words": len(words),
            "language": language, "language_prob": (asr or {}).get("language_prob"), "language_agrees": None,
            "mean_word_prob": float(np.mean(probs)) if probs else None,
            "avg_logprob": avg_logprob, "max_compression_ratio": compression,
            "speech_ratio": speech_s / duration if vad and duration > 0 else None,
            "snr_db": None, "dnsmos_ovrl": None, "distillmos": None, "music_ratio": None, "clipping_ratio": None,
            "speaker_label": None, "speaker_purity": None, "n_speakers": None,
            "words_per_s": None, "has_pii": None, "hallucination": None,
        }
        if vad and _ok(item, "snr"):
            out["snr_db"] = measure_snr(x, SR, local, Snr.default_params)["snr_db"]
        quality, distill = _ok(item, "quality"), _ok(item, "distillmos")
        if quality:
            known = _scores_inside(quality, WINDOW_S, start, end)
            scores = None if known else self._p835.score(x, self.params["mos_windows"])
            out["dnsmos_ovrl"] = known or (scores[2] if scores else None)
        if distill and duration >= 1.0:
            known = _scores_inside(distill, WINDOW / SR, start, end)
            if not known:
                batch = np.stack([windows(w, 1)[0] for w in centred_windows(x, WINDOW, self.params["mos_windows"])])
                known = float(score_windows(self._distill, batch, WINDOWS_PER_CALL).mean())
            out["distillmos"] = known
        events = _ok(item, "events")
        if events and events.get("patch_classes") is not None:
            out["music_ratio"] = _music_share(events["patch_classes"], start, end)
        levels = _ok(item, "levels")
        if levels and item.native is not None and item.native_rate:
            native = item.native[int(start * item.native_rate): int(end * item.native_rate)]
            threshold = Levels.default_params["clip_threshold"]
            out["clipping_ratio"] = float(np.count_nonzero(np.abs(native) >= threshold) / native.size) \
                if native.size else None
        if _ok(item, "speakers"):
            label, purity, n_speakers = speaker_share(turns, start, end)
            out.update(speaker_label=label, speaker_purity=purity, n_speakers=n_speakers)
        if text_result:
            norm = normalize(text).split()
            params = Text.default_params
            lang, _ = text_language(self._detector, text or "")
            out["language_agrees"] = None if lang is None or not language else lang == language
            out["words_per_s"] = len(norm) / speech_s if speech_s > 0 else None
            out["has_pii"] = any(overlap(p["start_s"], p["end_s"], start, end) > 0 or start <= p["start_s"] < end
                                 for p in text_result.get("pii") or [])
            out["hallucination"] = bool(
                repeated_ngrams(norm, params["ngram"], params["ngram_repeats"])
                or (compression or 0) > params["compression_ratio_max"]
                or (norm and out["speech_ratio"] is not None and out["speech_ratio"] < params["no_speech_ratio"]))
        return out


def _scores_inside(result: dict, window_s: float, start: float, end: float) -> float | None:
    """The mean score of the file's scored windows (quality's or distillmos's `windows`) that lie inside
    [start, end]: the clip's own audio, already scored; None when none does."""
    inside = [w["score"] for w in result.get("windows") or []
              if w["start_s"] >= start - 1e-6 and w["start_s"] + window_s <= end + 1e-6]
    return float(np.mean(inside)) if inside else None


def _word(w: dict, offset: float) -> dict:
    return {"word": w["word"], "start_s": round(float(w["start_s"]) - offset, 3),
            "end_s": round(float(w["end_s"]) - offset, 3), "probability": w.get("probability")}


def _music_share(classes: list[int], start: float, end: float) -> float | None:
    """Share of the patches centred in [start, end) whose coarse class is music (the nearest patch for a
    span shorter than a patch hop)."""
    if not classes:
        return None
    first = max(0, math.ceil((start - PATCH_S / 2) / PATCH_HOP_S))
    last = min(len(classes), math.ceil((end - PATCH_S / 2) / PATCH_HOP_S))
    picked = classes[first:last] or [classes[min(len(classes) - 1, max(0, first))]]
    return float(np.mean(np.array(picked) == MUSIC))
