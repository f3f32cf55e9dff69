"""The one door to faster-whisper's internals (pinned: faster-whisper 1.2.1).

`asr` runs faster-whisper's own decoding loop over many files at once (annotators.whisper_batch), and
`vad` and Whisper's features reuse faster-whisper's Silero model and feature extractor. That means
calling parts faster-whisper does not document: a private method of WhisperModel, module-level
helpers of `faster_whisper.transcribe`, the feature extractor's attributes, the VAD model's ONNX
session. Every such use goes through this module and nowhere else; `WhisperModel.transcribe` and
`decode_audio`, which are documented, are used directly.

tests/test_third_party_internals.py checks every name below against the installed package and fails,
naming this module, when an upgrade removes or renames one. Importing this module imports nothing
heavy: faster-whisper (and CTranslate2 with it) loads on first use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# module-level names used, by module
MODULE_NAMES = {
    "faster_whisper.transcribe": ("get_ctranslate2_storage", "get_compression_ratio", "get_suppressed_tokens",
                                  "TranscriptionOptions", "Segment", "Word", "WhisperModel"),
    "faster_whisper.tokenizer": ("Tokenizer",),
    "faster_whisper.audio": ("pad_or_trim",),
    "faster_whisper.utils": ("get_end",),
    "faster_whisper.vad": ("get_vad_model", "VadOptions"),
}
# WhisperModel methods called, with the parameters passed to them by name
MODEL_METHODS = {
    "_split_segments_by_timestamps": ("tokenizer", "tokens", "time_offset", "segment_size", "segment_duration",
                                      "seek"),
    "find_alignment": ("tokenizer", "text_tokens", "encoder_output", "num_frames"),
    "add_word_timestamps": ("segments", "tokenizer", "encoder_output", "num_frames", "prepend_punctuations",
                            "append_punctuations", "last_speech_timestamp"),
    "get_prompt": ("tokenizer", "previous_tokens"),
}
# attributes of a WhisperModel and of its FeatureExtractor that are read
MODEL_ATTRIBUTES = ("model", "hf_tokenizer", "feature_extractor", "frames_per_second", "time_precision",
                    "max_length")
FEATURE_EXTRACTOR_ATTRIBUTES = ("n_fft", "hop_length", "mel_filters", "stft", "nb_max_frames", "time_per_frame")
# fields of TranscriptionOptions this code fills (all of them: the dataclass has no defaults)
TRANSCRIPTION_OPTION_FIELDS = (
    "beam_size", "best_of", "patience", "length_penalty", "repetition_penalty", "no_repeat_ngram_size",
    "log_prob_threshold", "no_speech_threshold", "compression_ratio_threshold", "condition_on_previous_text",
    "prompt_reset_on_temperature", "temperatures", "initial_prompt", "prefix", "suppress_blank",
    "suppress_tokens", "without_timestamps", "max_initial_timestamp", "word_timestamps",
    "prepend_punctuations", "append_punctuations", "multilingual", "max_new_tokens", "clip_timestamps",
    "hallucination_silence_threshold", "hotwords")


def prompt(model, tokenizer, previous_tokens: list[int]) -> list[int]:
    """The decoder prompt of a window: WhisperModel.get_prompt."""
    return model.get_prompt(tokenizer, previous_tokens)


def find_alignment(model, tokenizer, text_tokens: list[list[int]], encoder_output, num_frames: list[int]):
    """Word alignments of several windows in one CTranslate2 `align` call: WhisperModel.find_alignment."""
    return model.find_alignment(tokenizer, text_tokens, encoder_output, num_frames)


@dataclass(frozen=True)
class Timing:
    """A WhisperModel's fixed numbers: frames per 30 s window, seconds per frame, frames per second,
    seconds per timestamp token, and the decoder's longest output."""

    window_frames: int
    time_per_frame: float
    frames_per_second: float
    time_precision: float
    max_length: int


def timing(model) -> Timing:
    fe = model.feature_extractor
    return Timing(fe.nb_max_frames, fe.time_per_frame, model.frames_per_second, model.time_precision,
                  model.max_length)


@dataclass(frozen=True)
class Spectrogram:
    """What Whisper's log-mel features are made of: the STFT size and hop, the mel filters and the
    extractor's own STFT function."""

    n_fft: int
    hop_length: int
    mel_filters: Any
    stft: Any


def spectrogram(extractor) -> Spectrogram:
    return Spectrogram(extractor.n_fft, extractor.hop_length, extractor.mel_filters, extractor.stft)


def ctranslate2_storage(features):
    """Features (numpy) as the CTranslate2 StorageView the encoder takes."""
    from faster_whisper.transcribe import get_ctranslate2_storage

    return get_ctranslate2_storage(features)


def compression_ratio(text: str) -> float:
    from faster_whisper.transcribe import get_compression_ratio

    return get_compression_ratio(text)


def suppressed_tokens(tokenizer, tokens: list[int]) -> list[int]:
    from faster_whisper.transcribe import get_suppressed_tokens

    return get_suppressed_tokens(tokenizer, tokens)


def transcription_options(**values):
    from faster_whisper.transcribe import TranscriptionOptions

    return TranscriptionOptions(**values)


def transcribe_defaults() -> dict[str, Any]:
    """`WhisperModel.transcribe`'s keyword defaults (what an option left out means)."""
    import inspect

    from faster_whisper import WhisperModel

    return {k: v.default for k, v in inspect.signature(WhisperModel.transcribe).parameters.items() if k != "self"}


def tokenizer(model, multilingual: bool, language: str):
    """A transcription tokenizer for `language` over the model's Hugging Face tokenizer."""
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language=language)


def pad_or_trim(features):
    from faster_whisper.audio import pad_or_trim as _pad_or_trim

    return _pad_or_trim(features)


def segment(**fields):
    from faster_whisper.transcribe import Segment

    return Segment(**fields)


def word(**fields):
    from faster_whisper.transcribe import Word

    return Word(**fields)


def end_of(segments: list[dict]) -> float | None:
    """The end of the last word (or segment) of dict segments, as faster-whisper's loop reads it."""
    from faster_whisper.utils import get_end

    return get_end(segments)


def split_segments_by_timestamps(model, **kwargs):
    """WhisperModel._split_segments_by_timestamps: one window's tokens → segments, the next seek and
    whether the window ended on a single timestamp."""
    return model._split_segments_by_timestamps(**kwargs)


class _Aligned:
    """Stands in for the WhisperModel as `self` of `WhisperModel.add_word_timestamps`, answering its one
    `find_alignment` call with an alignment computed beforehand for the whole batch. This reuses
    faster-whisper's word-timing rules (punctuation merging, long-word truncation) unchanged."""

    def __init__(self, frames_per_second: float, alignment: list[dict]):
        self.frames_per_second = frames_per_second
        self._alignment = alignment

    def find_alignment(self, tokenizer, text_tokens, encoder_output, num_frames, median_filter_width=7):
        return [self._alignment]


def add_word_timestamps(frames_per_second: float, alignment: list[dict], segments: list[dict], tokenizer,
                        num_frames: int, prepend_punctuations: str, append_punctuations: str,
                        last_speech_timestamp: float) -> None:
    """Word timings of one window's dict segments (in place) from an alignment computed beforehand."""
    from faster_whisper.transcribe import WhisperModel

    WhisperModel.add_word_timestamps(
        _Aligned(frames_per_second, alignment), [segments], tokenizer, None, num_frames, prepend_punctuations,
        append_punctuations, last_speech_timestamp=last_speech_timestamp)


def silero_vad_session():
    """The ONNX session of the Silero VAD v6 model faster-whisper ships (faster-whisper caches it)."""
    from faster_whisper.vad import get_vad_model

    return get_vad_model().session


def vad_options(**values):
    from faster_whisper.vad import VadOptions

    return VadOptions(**values)
