"""Text: what the transcript says about itself: speaking rate, hallucination flags, text-side language,
PII with time spans (annotators.pii), and WER/CER against the manifest's reference transcript.

WER/CER normalisation is Whisper's own, so figures compare with published ones: its English normaliser
(spellings, numbers, contractions, fillers) for English, its basic normaliser (symbols and punctuation
removed, lower case) for every other language; both from the `whisper-normalizer` package. `normalize`
(below: NFKC, lower case, punctuation removed) is kept for the hallucination checks, which count words.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

import pyarrow as pa

from annotators.base import OK, Annotator, AudioItem
from annotators.pii import find_pii

PII = pa.struct([
    pa.field("kind", pa.string()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
])

NO_WORD_BOUNDARY_LANGS = {"zh", "ja", "th", "lo", "my", "km", "yue"}


def normalize(text: str | None) -> str:
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[-_/]", " ", text)
    text = re.sub(r"(?<=\w)'(?=\w)", "\u0000", text)  # keep in-word apostrophes
    text = "".join(" " if unicodedata.category(c).startswith(("P", "S")) else c for c in text)
    return re.sub(r"\s+", " ", text.replace("\u0000", "'")).strip()


@functools.lru_cache(maxsize=2)
def _whisper_normalizer(english: bool):
    if english:
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()
    from whisper_normalizer.basic import BasicTextNormalizer

    return BasicTextNormalizer()


def wer_normalize(text: str | None, language: str | None) -> str:
    """Whisper's normalisation for WER: the English normaliser for English, the basic one otherwise."""
    if not text:
        return ""
    english = (language or "").split("-")[0] == "en"
    return re.sub(r"\s+", " ", _whisper_normalizer(english)(text)).strip()


def error_rates(reference: str, hypothesis: str, language: str | None) -> tuple[float | None, float | None]:
    import jiwer

    ref, hyp = wer_normalize(reference, language), wer_normalize(hypothesis, language)
    if not ref:
        return None, None
    cer = jiwer.cer(ref, hyp) if hyp else 1.0
    if (language or "") in NO_WORD_BOUNDARY_LANGS:
        return None, float(cer)
    wer = jiwer.wer(ref, hyp) if hyp else 1.0
    return float(wer), float(cer)


def repeated_ngrams(words: list[str], n: int = 3, min_repeats: int = 3) -> bool:
    if len(words) < n * min_repeats:
        return False
    counts = Counter(tuple(words[i: i + n]) for i in range(len(words) - n + 1))
    return max(counts.values()) >= min_repeats


@functools.lru_cache(maxsize=2)
def language_detector(low_accuracy: bool = True):
    """lingua's detector over every language, loaded once per process (text and clips share it).
    Low-accuracy mode (trigram models only): a fraction of the full models' load time and memory per
    worker, and accurate on sentence-length transcripts; very short texts get no text-side opinion."""
    from lingua import LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages()
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return builder.with_preloaded_language_models().build()


def text_language(detector, text: str) -> tuple[str | None, float | None]:
    """lingua's best language (ISO 639-1) and its confidence; None for too little text."""
    if len(normalize(text)) < 8:
        return None, None  # too little text for a text-side opinion
    values = detector.compute_language_confidence_values(text)
    if not values:
        return None, None
    best = values[0]
    return best.language.iso_code_639_1.name.lower(), float(best.value)


class Text(Annotator):
    name = "text"
    expensive = True  # reads asr (gated with it): PII, language and hallucination checks
    version = "2.0.0"  # 2: PII by annotators.pii, WER with Whisper's normalisers
    requires = ("asr",)
    uses = ("vad",)
    meta_inputs = ("reference_text",)
    default_params = {
        "compression_ratio_max": 2.4,
        "ngram": 3,
        "ngram_repeats": 3,
        "no_speech_ratio": 0.05,
        "language_prob_min": 0.7,
        "lingua_low_accuracy": True,
    }
    fields = [
        pa.field("n_words", pa.int32()),
        pa.field("words_per_s", pa.float64()),
        pa.field("chars_per_s", pa.float64()),
        pa.field("flag_repeated_ngrams", pa.bool_()),
        pa.field("flag_high_compression", pa.bool_()),
        pa.field("flag_text_without_speech", pa.bool_()),
        pa.field("hallucination", pa.bool_()),
        pa.field("text_language", pa.string()),
        pa.field("text_language_conf", pa.float64()),
        pa.field("language_agrees", pa.bool_()),
        pa.field("language_confident", pa.bool_()),
        pa.field("pii", pa.list_(PII)),
        pa.field("has_pii", pa.bool_()),
        pa.field("wer", pa.float64()),
        pa.field("cer", pa.float64()),
    ]

    def setup(self, device="cpu", device_index=0, threads=1):
        super().setup(device, device_index, threads)
        self.detector = language_detector(self.params["lingua_low_accuracy"])

    def annotate(self, item: AudioItem) -> dict:
        asr = item.upstream["asr"]
        vad = item.upstream.get("vad") if (item.upstream.get("vad") or {}).get("status") == OK else None
        text = asr.get("text") or ""
        words = normalize(text).split()
        speech_s = vad["speech_s"] if vad else item.duration_s
        rate_s = speech_s if speech_s and speech_s > 0 else None
        ratio = vad["speech_ratio"] if vad else None
        flags = {
            "flag_repeated_ngrams": repeated_ngrams(words, self.params["ngram"], self.params["ngram_repeats"]),
            "flag_high_compression": (asr.get("max_compression_ratio") or 0) > self.params["compression_ratio_max"],
            "flag_text_without_speech": bool(words) and ratio is not None and ratio < self.params["no_speech_ratio"],
        }
        text_lang, text_conf = self._language(text)
        agrees = None if text_lang is None or not asr.get("language") else text_lang == asr["language"]
        confident = (asr.get("language_prob") or 0) >= self.params["language_prob_min"] and agrees is not False
        pii = self._pii(asr.get("segments") or [], asr.get("language"))
        wer, cer = error_rates(item.meta.get("reference_text"), text, asr.get("language"))
        return {
            "n_words": len(words),
            "words_per_s": len(words) / rate_s if rate_s else None,
            "chars_per_s": len(text.replace(" ", "")) / rate_s if rate_s else None,
            **flags,
            "hallucination": any(flags.values()),
            "text_language": text_lang,
            "text_language_conf": text_conf,
            "language_agrees": agrees,
            "language_confident": confident,
            "pii": pii,
            "has_pii": bool(pii),
            "wer": wer,
            "cer": cer,
        }

    def _language(self, text: str) -> tuple[str | None, float | None]:
        return text_language(self.detector, text)

    @staticmethod
    def _pii(segments: list[dict], language: str | None) -> list[dict]:
        """PII findings with the time span of the words they cover."""
        words = [w for s in segments for w in (s.get("words") or [])]
        found = find_pii([w["word"] for w in words], language)
        return [{"kind": f.kind, "start_s": words[f.first_word]["start_s"], "end_s": words[f.last_word]["end_s"]}
                for f in found]
