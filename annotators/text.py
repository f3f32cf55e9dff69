"""Text: what the transcript says about itself: speaking rate, hallucination flags, text-side language,
PII with time spans, and WER/CER against the manifest's reference transcript.

Text normalisation for WER/CER (documented in the README; the same function is used by tests and
benchmarks): Unicode NFKC, lower case, hyphens/underscores/slashes to spaces, every other punctuation
character removed (apostrophes inside words kept), whitespace collapsed. Numbers are not spelled out,
so "1455" against "fourteen fifty-five" counts as errors, for every system alike.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter

import pyarrow as pa

from annotators.base import OK, Annotator, AudioItem

PII = pa.struct([
    pa.field("kind", pa.string()),
    pa.field("start_s", pa.float64()),
    pa.field("end_s", pa.float64()),
])

NO_WORD_BOUNDARY_LANGS = {"zh", "ja", "th", "lo", "my", "km", "yue"}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+\s?(?:@|\bat\b)\s?[A-Za-z0-9-]+(?:\s?(?:\.|\bdot\b)\s?[A-Za-z]{2,})+")
PHONE = re.compile(r"(?<![\d])(?:\+?\d[\d\s().-]{6,}\d)(?![\d])")
CARD = re.compile(r"(?<![\d])(?:\d[\s-]?){13,19}(?![\d])")


def normalize(text: str | None) -> str:
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[-_/]", " ", text)
    text = re.sub(r"(?<=\w)'(?=\w)", "\u0000", text)  # keep in-word apostrophes
    text = "".join(" " if unicodedata.category(c).startswith(("P", "S")) else c for c in text)
    return re.sub(r"\s+", " ", text.replace("\u0000", "'")).strip()


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def error_rates(reference: str, hypothesis: str, language: str | None) -> tuple[float | None, float | None]:
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
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


class Text(Annotator):
    name = "text"
    version = "1.0.0"
    requires = ("asr",)
    uses = ("vad",)
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
        from lingua import LanguageDetectorBuilder

        # Low-accuracy mode (trigram models only): 0.2 s and ~100 MB per worker instead of ~1 GB, and
        # accurate on sentence-length transcripts; very short texts get no text-side opinion anyway.
        builder = LanguageDetectorBuilder.from_all_languages()
        if self.params["lingua_low_accuracy"]:
            builder = builder.with_low_accuracy_mode()
        self.detector = builder.with_preloaded_language_models().build()

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
        pii = self._pii(asr.get("segments") or [])
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
        if len(normalize(text)) < 8:
            return None, None  # too little text for a text-side opinion
        values = self.detector.compute_language_confidence_values(text)
        if not values:
            return None, None
        best = values[0]
        return best.language.iso_code_639_1.name.lower(), float(best.value)

    @staticmethod
    def _pii(segments: list[dict]) -> list[dict]:
        """Find PII in the words' text and map each match back to the words' time span."""
        words = [w for s in segments for w in (s.get("words") or [])]
        if not words:
            return []
        joined, offsets = "", []
        for w in words:
            start = len(joined)
            joined += w["word"] + " "
            offsets.append((start, len(joined) - 1))

        def span(m):
            hit = [w for w, (a, b) in zip(words, offsets, strict=True) if a < m.end() and b > m.start()]
            return hit[0]["start_s"], hit[-1]["end_s"]

        found, taken = [], []
        for m in EMAIL.finditer(joined):
            found.append(("email", m))
            taken.append(m.span())
        for m in CARD.finditer(joined):
            digits = re.sub(r"\D", "", m.group())
            if 13 <= len(digits) <= 19 and luhn_ok(digits):
                found.append(("card_number", m))
                taken.append(m.span())
        for m in PHONE.finditer(joined):
            digits = re.sub(r"\D", "", m.group())
            overlaps = any(a < m.end() and m.start() < b for a, b in taken)
            if 7 <= len(digits) <= 15 and not overlaps:
                found.append(("phone_number", m))
        out = []
        for kind, m in sorted(found, key=lambda t: t[1].start()):
            start_s, end_s = span(m)
            out.append({"kind": kind, "start_s": start_s, "end_s": end_s})
        return out
