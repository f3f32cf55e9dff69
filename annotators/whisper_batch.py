"""Cross-file batched Whisper: faster-whisper's own per-file decoding loop, run in lock step over many files.

`WhisperModel.transcribe` decodes one file at a time, window after window, and encodes each first window
twice (once for language detection, once again for decoding). On a dataset of 2-12 s clips the encoder
and the beam search then never see more than one window at a time. Here every file of a batch is a
state (its features, its seek position, its tokenizer); each round takes the next 30 s window of up to
`batch_size` files and runs the steps of faster-whisper's `generate_segments` on all of them together:

1. the windows' encoder output (one call for all of them on a GPU, one per window on a CPU, where that
   is faster: CPU_ENCODE_WINDOWS), reused for language detection;
2. `detect_language` for the files still at their first window (per file: each keeps its own language);
3. one `generate` call with one prompt per file (its language token), beam search as configured; files
   whose result fails the thresholds fall back to the next temperature, in a smaller batch, per file;
4. the no-speech skip, `_split_segments_by_timestamps` and word timestamps (`align` batched per language),
   with faster-whisper's own methods, so segments, words and seek updates follow the unbatched path.

A file longer than one window simply takes part in several rounds; a finished file leaves its slot to
the next one. What differs from the unbatched path is only the arithmetic of batched matrix products
(and the one 10 ms frame that transcribe adds to its language-detection window): the WER comparison in
BENCHMARKS.md measures it.

Written here rather than taken from faster-whisper because its `BatchedInferencePipeline` batches the
VAD chunks of one file under one language, without temperature fallback, which is a different output.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotators import faster_whisper_internals as fw
from annotators.whisper_features import log_mel

log = logging.getLogger(__name__)

# On a CPU the encoder runs one window per call: its rows come out bit for bit as in a batched call, and
# one window per call was the faster of the two on the CPUs measured (docs/annotators.md). The decoder keeps its
# batch (one generate call per round).
CPU_ENCODE_WINDOWS = 1

# transcribe() options this loop implements; the others must keep faster-whisper's defaults (checked)
SUPPORTED = {"beam_size", "best_of", "patience", "length_penalty", "repetition_penalty", "no_repeat_ngram_size",
             "temperature", "compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold",
             "condition_on_previous_text", "prompt_reset_on_temperature", "suppress_blank", "suppress_tokens",
             "max_initial_timestamp", "word_timestamps", "prepend_punctuations", "append_punctuations"}


@dataclass
class LanguageInfo:
    """What `TranscriptionInfo` says about the language (the fields the asr annotator reads)."""

    language: str
    language_probability: float
    all_language_probs: list[tuple[str, float]] | None


@dataclass
class _File:
    index: int
    features: np.ndarray  # (n_mels, frames), as WhisperModel.feature_extractor returns them
    language: str | None
    tokenizer: Any = None
    info: LanguageInfo | None = None
    seek: int = 0
    segments: list = field(default_factory=list)
    all_tokens: list[int] = field(default_factory=list)
    prompt_reset_since: int = 0
    last_speech_timestamp: float = 0.0

    @property
    def content_frames(self) -> int:
        return self.features.shape[-1] - 1

    @property
    def done(self) -> bool:
        return self.seek >= self.content_frames


@dataclass
class _Window:
    """One file's decoded window in a round, on its way to word timings and segments."""

    row: int  # the file's row in the round's encoder output
    file: _File
    size: int  # frames of real audio in the window
    seek: int  # where the window started
    segments: list[dict]
    single_ending: bool
    decoded: tuple  # (generation result, avg_logprob, temperature, compression_ratio)


def _array(view):
    """A CTranslate2 StorageView as an array without a copy: numpy on the CPU, a torch tensor on a GPU
    (through torch's __cuda_array_interface__ support)."""
    if view.device == "cpu":
        return np.asarray(view)
    import torch

    return torch.as_tensor(view, device=f"cuda:{view.device_index}")


def _view(array, holders: list):
    """A StorageView over `array`. `from_array` does not copy: the array is appended to `holders`, which
    the caller keeps alive for as long as the view is used."""
    import ctranslate2

    holders.append(array)
    return ctranslate2.StorageView.from_array(array)


def take(view, indices: list[int], holders: list):
    """Rows `indices` of a CTranslate2 StorageView (the encoder output) as a new StorageView."""
    part = _array(view)[indices]
    return _view(np.ascontiguousarray(part) if view.device == "cpu" else part.contiguous(), holders)


def join(views: list, holders: list):
    """CTranslate2 StorageViews of one shape but the first, stacked along it as a new StorageView."""
    if views[0].device == "cpu":
        return _view(np.concatenate([_array(v) for v in views]), holders)
    import torch

    return _view(torch.cat([_array(v) for v in views]).contiguous(), holders)


class BatchedWhisper:
    """Transcribes many files with one WhisperModel, `batch_size` windows per model call."""

    def __init__(self, model, options: dict, batch_size: int):
        unsupported = set(options) - SUPPORTED
        if unsupported:
            raise ValueError(f"batched decoding does not implement {sorted(unsupported)}")
        self.model = model
        self.batch_size = max(1, int(batch_size))
        # windows per encoder call: all of a round's on a GPU; one at a time on a CPU (see CPU_ENCODE_WINDOWS)
        self.encode_windows = CPU_ENCODE_WINDOWS if model.model.device == "cpu" else None
        o = {**fw.transcribe_defaults(), **options}
        temperatures = o["temperature"] if isinstance(o["temperature"], (list, tuple)) else [o["temperature"]]
        any_tokenizer = fw.tokenizer(model, model.model.is_multilingual, "en")
        self.options = fw.transcription_options(
            beam_size=o["beam_size"], best_of=o["best_of"], patience=o["patience"],
            length_penalty=o["length_penalty"], repetition_penalty=o["repetition_penalty"],
            no_repeat_ngram_size=o["no_repeat_ngram_size"], log_prob_threshold=o["log_prob_threshold"],
            no_speech_threshold=o["no_speech_threshold"],
            compression_ratio_threshold=o["compression_ratio_threshold"],
            condition_on_previous_text=o["condition_on_previous_text"],
            prompt_reset_on_temperature=o["prompt_reset_on_temperature"], temperatures=list(temperatures),
            initial_prompt=None, prefix=None, suppress_blank=o["suppress_blank"],
            # the suppressed ids do not depend on the language (non-speech symbols and task tokens)
            suppress_tokens=(fw.suppressed_tokens(any_tokenizer, list(o["suppress_tokens"]))
                             if o["suppress_tokens"] else o["suppress_tokens"]),
            without_timestamps=False, max_initial_timestamp=o["max_initial_timestamp"],
            word_timestamps=o["word_timestamps"], prepend_punctuations=o["prepend_punctuations"],
            append_punctuations=o["append_punctuations"], multilingual=False, max_new_tokens=None,
            clip_timestamps="0", hallucination_silence_threshold=None, hotwords=None,
        )
        self.timing = fw.timing(model)
        self.n_frames, self.time_per_frame = self.timing.window_frames, self.timing.time_per_frame
        self.calls = {"rounds": 0, "encode": 0, "generate": 0, "align": 0, "windows": 0}

    # ---- public
    def transcribe(self, audios: list[np.ndarray], languages: list[str | None]) -> list[tuple[list, LanguageInfo]]:
        """(segments, language info) per audio (16 kHz float32), in order; `languages[i]` forces one.
        The audio is rounded to 16-bit steps as its features are computed, as faster-whisper's own
        decode_audio delivers it (already rounded audio stays as it is)."""
        pending = list(range(len(audios)))
        active: list[_File] = []
        done: dict[int, _File] = {}
        while pending or active:
            while pending and len(active) < self.batch_size:  # features only when a file takes a slot
                i = pending.pop(0)
                active.append(_File(i, log_mel(self.model.feature_extractor, audios[i], int16_grid=True), languages[i]))
            self._round(active)
            for f in [f for f in active if f.done]:
                done[f.index] = f
            active = [f for f in active if not f.done]
        return [(done[i].segments, done[i].info) for i in range(len(audios))]

    # ---- one round: the next window of every active file
    def _round(self, files: list[_File]) -> None:
        sizes = [min(self.n_frames, f.content_frames - f.seek) for f in files]
        windows = np.stack([fw.pad_or_trim(f.features[:, f.seek: f.seek + n])
                            for f, n in zip(files, sizes, strict=True)])
        holders: list = []
        encoded = self._encode(windows, holders)
        self.calls["rounds"] += 1
        self.calls["windows"] += len(files)
        self._detect_languages(files, encoded, holders)
        prompts = [fw.prompt(self.model, f.tokenizer, f.all_tokens[f.prompt_reset_since:]) for f in files]
        decoded = self._generate_with_fallback(encoded, prompts, files, holders)

        kept: list[_Window] = []
        o = self.options
        for row, (f, size, result) in enumerate(zip(files, sizes, decoded, strict=True)):
            gen, avg_logprob = result[0], result[1]
            if o.no_speech_threshold is not None and gen.no_speech_prob > o.no_speech_threshold and not (
                    o.log_prob_threshold is not None and avg_logprob > o.log_prob_threshold):
                f.seek += size  # no speech in this window: fast-forward, as faster-whisper does
                continue
            start = f.seek
            segments, f.seek, single_ending = fw.split_segments_by_timestamps(
                self.model, tokenizer=f.tokenizer, tokens=gen.sequences_ids[0], time_offset=start * self.time_per_frame,
                segment_size=size, segment_duration=size * self.time_per_frame, seek=start)
            kept.append(_Window(row, f, size, start, segments, single_ending, result))
        if o.word_timestamps:
            self._add_word_timestamps(kept, encoded, holders)
        for w in kept:
            self._emit(w)

    def _encode(self, windows: np.ndarray, holders: list):
        """The encoder output of every window, `encode_windows` windows per call, joined into one view."""
        step = self.encode_windows or len(windows)
        parts = []
        for k in range(0, len(windows), step):
            parts.append(self.model.model.encode(fw.ctranslate2_storage(windows[k: k + step]), to_cpu=False))
            self.calls["encode"] += 1
        return parts[0] if len(parts) == 1 else join(parts, holders)

    def _detect_languages(self, files: list[_File], encoded, holders: list) -> None:
        multilingual = self.model.model.is_multilingual
        todo = [k for k, f in enumerate(files) if f.tokenizer is None]
        detect = [k for k in todo if files[k].language is None and multilingual]
        if detect:
            sub = encoded if len(detect) == len(files) else take(encoded, detect, holders)
            for k, ranked in zip(detect, self.model.model.detect_language(sub), strict=True):
                probs = [(token[2:-2], float(p)) for token, p in ranked]
                files[k].info = LanguageInfo(probs[0][0], probs[0][1], probs)
        for k in todo:
            f = files[k]
            if f.info is None:  # forced, or an English-only model
                f.info = LanguageInfo(f.language if multilingual else "en", 1.0, None)
            f.tokenizer = fw.tokenizer(self.model, multilingual, f.info.language)

    def _generate_with_fallback(self, encoded, prompts, files, holders) -> list[tuple]:
        """faster-whisper's generate_with_fallback, per file, over the batch: the files that need the next
        temperature are decoded again together."""
        o = self.options
        n = len(files)
        final: list[tuple | None] = [None] * n
        tried: list[list[tuple]] = [[] for _ in range(n)]
        below_cr: list[list[tuple]] = [[] for _ in range(n)]
        pending = list(range(n))
        max_initial = int(round(o.max_initial_timestamp / self.timing.time_precision))
        temperature = o.temperatures[0]
        for temperature in o.temperatures:
            if not pending:
                break
            if temperature > 0:
                kwargs = {"beam_size": 1, "num_hypotheses": o.best_of, "sampling_topk": 0,
                          "sampling_temperature": temperature}
            else:
                kwargs = {"beam_size": o.beam_size, "patience": o.patience}
            sub = encoded if len(pending) == n else take(encoded, pending, holders)
            results = self.model.model.generate(
                sub, [prompts[i] for i in pending], length_penalty=o.length_penalty,
                repetition_penalty=o.repetition_penalty, no_repeat_ngram_size=o.no_repeat_ngram_size,
                max_length=self.timing.max_length, return_scores=True, return_no_speech_prob=True,
                suppress_blank=o.suppress_blank, suppress_tokens=o.suppress_tokens,
                max_initial_timestamp_index=max_initial, **kwargs)
            self.calls["generate"] += 1
            still = []
            for i, result in zip(pending, results, strict=True):
                tokens = result.sequences_ids[0]
                avg_logprob = result.scores[0] * (len(tokens) ** o.length_penalty) / (len(tokens) + 1)
                ratio = fw.compression_ratio(files[i].tokenizer.decode(tokens).strip())
                outcome = (result, avg_logprob, temperature, ratio)
                tried[i].append(outcome)
                needs_fallback = False
                if o.compression_ratio_threshold is not None:
                    if ratio > o.compression_ratio_threshold:
                        needs_fallback = True  # too repetitive
                    else:
                        below_cr[i].append(outcome)
                if o.log_prob_threshold is not None and avg_logprob < o.log_prob_threshold:
                    needs_fallback = True  # average log probability too low
                if (o.no_speech_threshold is not None and result.no_speech_prob > o.no_speech_threshold
                        and o.log_prob_threshold is not None and avg_logprob < o.log_prob_threshold):
                    needs_fallback = False  # silence
                if needs_fallback:
                    still.append(i)
                else:
                    final[i] = outcome
            pending = still
        for i in pending:  # every temperature failed: the best average log probability, last temperature
            best = max(below_cr[i] or tried[i], key=lambda t: t[1])
            final[i] = (best[0], best[1], temperature, best[3])
        return final

    def _add_word_timestamps(self, kept: list[_Window], encoded, holders: list) -> None:
        """One `align` call per language (its start sequence carries the language token)."""
        by_language: dict[str, list[_Window]] = {}
        for w in kept:
            by_language.setdefault(w.file.tokenizer.language_code, []).append(w)
        o = self.options
        for group in by_language.values():
            tokenizer = group[0].file.tokenizer
            text_tokens = [[t for s in w.segments for t in s["tokens"] if t < tokenizer.eot] for w in group]
            rows = [w.row for w in group]
            sub = encoded if len(rows) == encoded.shape[0] else take(encoded, rows, holders)
            alignments = fw.find_alignment(self.model, tokenizer, text_tokens, sub, [w.size for w in group])
            self.calls["align"] += 1
            for w, alignment in zip(group, alignments, strict=True):
                f = w.file
                fw.add_word_timestamps(self.timing.frames_per_second, alignment, w.segments, f.tokenizer, w.size,
                                       o.prepend_punctuations, o.append_punctuations, f.last_speech_timestamp)
                last_word_end = fw.end_of(w.segments)
                if not w.single_ending and last_word_end is not None and last_word_end > w.seek * self.time_per_frame:
                    f.seek = round(last_word_end * self.timing.frames_per_second)
                if last_word_end is not None:
                    f.last_speech_timestamp = last_word_end

    def _emit(self, w: _Window) -> None:
        f = w.file
        gen, avg_logprob, temperature, compression_ratio = w.decoded
        for s in w.segments:
            text = f.tokenizer.decode(s["tokens"])
            if s["start"] == s["end"] or not text.strip():
                continue
            f.all_tokens.extend(s["tokens"])
            f.segments.append(fw.segment(
                id=len(f.segments) + 1, seek=w.seek, start=s["start"], end=s["end"], text=text,
                tokens=s["tokens"], temperature=temperature, avg_logprob=avg_logprob,
                compression_ratio=compression_ratio, no_speech_prob=gen.no_speech_prob,
                words=[fw.word(**x) for x in s["words"]] if self.options.word_timestamps else None))
        o = self.options
        if not o.condition_on_previous_text or temperature > o.prompt_reset_on_temperature:
            f.prompt_reset_since = len(f.all_tokens)
