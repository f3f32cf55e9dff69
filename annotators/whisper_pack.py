"""Packing short clips into shared 30 s Whisper windows, and splitting the transcript back per clip.

Whisper's encoder always sees 30 s: a 4 s clip alone spends most of its encoder work on padding, and
on CPU the encoder is most of the cost of a short clip. Here clips of one language are laid end to end
with `gap_s` of silence between them in one window, decoded as one file (with word timestamps), and each
word goes back to the clip under its midpoint (a word in a gap goes to the nearest clip).

The language of each clip must be known before packing. Whisper's language detection runs on the encoder
output of the clip's own window, which is the cost packing saves; so the clip is detected on an encoder
pass over its own frames only (no padding, a fraction of the padded cost). That estimate is less sure than the padded one on hard clips, so only clips it names with at least `min_language_prob` are packed; the
others, and clips longer than `max_clip_s`, take the unpacked path with the usual detection.

Per-clip segment fields that Whisper scores per window (avg_logprob, no_speech_prob, compression_ratio,
temperature) are those of the packed window's segment the words came from. BENCHMARKS.md measures what
packing does to WER and to where words land.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from annotators import faster_whisper_internals as fw
from annotators.whisper_batch import BatchedWhisper, LanguageInfo

SR = 16000


@dataclass(frozen=True)
class PackSettings:
    max_clip_s: float = 20.0  # longer clips are decoded alone
    window_s: float = 29.0  # audio per packed window (Whisper's window is 30 s)
    gap_s: float = 2.0  # silence between two clips in a window
    min_language_prob: float = 0.9  # clips detected less surely than this are decoded alone


def detect_unpadded(batched: BatchedWhisper, audio: np.ndarray) -> LanguageInfo:
    """Whisper language detection on the encoder output of the clip's own frames (no 30 s padding)."""
    model = batched.model
    features = model.feature_extractor(audio)[:, :-1]
    encoded = model.model.encode(fw.ctranslate2_storage(np.ascontiguousarray(features[None])), to_cpu=False)
    batched.calls["detect_unpadded"] = batched.calls.get("detect_unpadded", 0) + 1
    ranked = model.model.detect_language(encoded)[0]
    probs = [(token[2:-2], float(p)) for token, p in ranked]
    return LanguageInfo(probs[0][0], probs[0][1], probs)


def plan_windows(durations: list[float], languages: list[str], settings: PackSettings) -> list[list[int]]:
    """Greedy, in input order: clips of one language fill a window until the next would not fit."""
    windows: list[list[int]] = []
    open_by_language: dict[str, tuple[list[int], float]] = {}
    for k, (seconds, language) in enumerate(zip(durations, languages, strict=True)):
        current = open_by_language.get(language)
        if current and current[1] + settings.gap_s + seconds <= settings.window_s:
            current[0].append(k)
            open_by_language[language] = (current[0], current[1] + settings.gap_s + seconds)
        else:
            members = [k]
            windows.append(members)
            open_by_language[language] = (members, seconds)
    return windows


def pack(audios: list[np.ndarray], gap_s: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The clips end to end with silence between them, and each clip's (start_s, end_s) in the result."""
    gap = np.zeros(int(round(gap_s * SR)), dtype=np.float32)
    parts, spans, at = [], [], 0
    for k, audio in enumerate(audios):
        if k:
            parts.append(gap)
            at += len(gap)
        parts.append(audio.astype(np.float32, copy=False))
        spans.append((at / SR, (at + len(audio)) / SR))
        at += len(audio)
    return np.concatenate(parts), spans


def owner(start: float, end: float, spans: list[tuple[float, float]]) -> int:
    """The clip under a word's midpoint, else the nearest one."""
    mid = (start + end) / 2
    distances = [0.0 if a <= mid <= b else min(abs(mid - a), abs(mid - b)) for a, b in spans]
    return int(np.argmin(distances))


def split(segments: list, spans: list[tuple[float, float]]) -> list[list]:
    """Per clip, the packed window's segments cut to that clip's words, in clip time."""
    out: list[list] = [[] for _ in spans]
    for segment in segments:
        words_by_clip: dict[int, list] = {}
        for w in segment.words or []:
            words_by_clip.setdefault(owner(w.start, w.end, spans), []).append(w)
        for k, words in sorted(words_by_clip.items()):
            a, b = spans[k]
            local = [fw.word(start=round(min(max(w.start, a), b) - a, 2), end=round(min(max(w.end, a), b) - a, 2),
                          word=w.word, probability=w.probability) for w in words]
            out[k].append(replace(segment, id=len(out[k]) + 1, seek=0, start=local[0].start, end=local[-1].end,
                                  text="".join(w.word for w in words), tokens=[], words=local))
    return out


def transcribe_packed(batched: BatchedWhisper, audios: list[np.ndarray], languages: list[str | None],
                      settings: PackSettings) -> list[tuple[list, LanguageInfo]]:
    """Like `BatchedWhisper.transcribe`, with the short clips packed into shared windows. Packed windows
    and the clips decoded alone go through one lock-step call together."""
    if not batched.options.word_timestamps:
        raise ValueError("packing needs word timestamps to split the transcript back per clip")
    infos: list[LanguageInfo | None] = [None] * len(audios)
    packable = []
    for k, (audio, language) in enumerate(zip(audios, languages, strict=True)):
        if len(audio) / SR > settings.max_clip_s or len(audio) < SR // 10:
            continue
        info = LanguageInfo(language, 1.0, None) if language else detect_unpadded(batched, audio)
        if info.language_probability >= settings.min_language_prob:
            infos[k] = info
            packable.append(k)
    groups = [[packable[i] for i in g] for g in plan_windows(
        [len(audios[k]) / SR for k in packable], [infos[k].language for k in packable], settings)]
    groups = [g for g in groups if len(g) > 1]  # a clip alone in its window gains nothing from packing
    packed_ids = {k for g in groups for k in g}
    alone = [k for k in range(len(audios)) if k not in packed_ids]
    jobs, spans_of = [], []
    for g in groups:
        audio, spans = pack([audios[k] for k in g], settings.gap_s)
        jobs.append((audio, infos[g[0]].language))
        spans_of.append(spans)
    jobs += [(audios[k], languages[k]) for k in alone]
    decoded = batched.transcribe([a for a, _ in jobs], [lang for _, lang in jobs])
    batched.calls["packed_clips"] = batched.calls.get("packed_clips", 0) + len(packed_ids)
    results: list[tuple[list, LanguageInfo] | None] = [None] * len(audios)
    for g, spans, (segments, _) in zip(groups, spans_of, decoded[: len(groups)], strict=True):
        for k, clip_segments in zip(g, split(segments, spans), strict=True):
            results[k] = (clip_segments, infos[k])
    for k, result in zip(alone, decoded[len(groups):], strict=True):
        results[k] = result
    return results
