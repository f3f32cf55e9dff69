"""All annotators over the real corpus: WER equal to bare faster-whisper, language ID, non-speech."""
from __future__ import annotations

import logging
from collections import defaultdict

import pytest

from annotators.pipeline import FileInput, Pipeline
from annotators.registry import ANNOTATORS, build
from annotators.text import normalize

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def corpus_results(corpus_dir, corpus_manifest):
    pipeline = Pipeline(build(list(ANNOTATORS)), strict=True)
    pipeline.setup(threads=2)
    inputs = [
        FileInput(m["path"], (lambda p=corpus_dir / m["path"]: open(p, "rb")),
                  {"reference_text": m["reference_transcript"] or None})
        for m in corpus_manifest
    ]
    outputs = []
    for start in range(0, len(inputs), 8):
        outputs += pipeline.run(inputs[start: start + 8])
    log.info("corpus annotation seconds by stage: %s", {k: round(v, 1) for k, v in pipeline.seconds.items()})
    return {o.audio_id: o for o in outputs}, pipeline


def wer_by_language(pairs):
    import jiwer

    by_lang = defaultdict(lambda: ([], []))
    for lang, ref, hyp in pairs:
        by_lang[lang][0].append(normalize(ref))
        by_lang[lang][1].append(normalize(hyp) or "<empty>")
    return {lang: jiwer.wer(refs, hyps) for lang, (refs, hyps) in by_lang.items()}


def test_every_file_gets_every_annotation(corpus_results, corpus_manifest):
    results, _ = corpus_results
    assert set(results) == {m["path"] for m in corpus_manifest}
    for path, out in results.items():
        assert out.decode["status"] == "ok", (path, out.decode)
        for name in ANNOTATORS:
            assert out.results[name]["status"] in ("ok", "skipped", "failed")
            assert out.results[name]["status"] == "ok" or out.results[name]["error_code"], (path, name)
        assert out.results["levels"]["status"] == "ok", path
    kinds = {m["path"]: m["kind"] for m in corpus_manifest}
    for path, out in results.items():
        if kinds[path] != "nonspeech":
            assert out.results["asr"]["status"] == "ok", (path, out.results["asr"]["error_message"])


def test_wer_equals_bare_faster_whisper(corpus_results, corpus_dir, corpus_manifest):
    """Same model, same settings, bare faster-whisper on the same files: WER within 0.5 points per language."""
    from faster_whisper import WhisperModel

    results, pipeline = corpus_results
    asr = next(a for a in pipeline.annotators if a.name == "asr")
    bare = WhisperModel(asr.resolved.path, device="cpu", compute_type=asr.compute_type, cpu_threads=2)
    scored = [m for m in corpus_manifest if m["reference_transcript"] and m["kind"] == "speech"
              and m["language"] not in ("zh", "ja")]
    ours, theirs = [], []
    for m in scored:
        segments, _ = bare.transcribe(str(corpus_dir / m["path"]), vad_filter=False, **asr.options)
        theirs.append((m["language"], m["reference_transcript"], " ".join(s.text.strip() for s in segments)))
        ours.append((m["language"], m["reference_transcript"], results[m["path"]].results["asr"]["text"]))
    w_ours, w_bare = wer_by_language(ours), wer_by_language(theirs)
    log.info("WER by language, voxlake vs bare faster-whisper: %s",
             {k: (round(w_ours[k], 4), round(w_bare[k], 4)) for k in w_ours})
    for lang in w_bare:
        assert w_ours[lang] == pytest.approx(w_bare[lang], abs=0.005), lang
    assert w_ours["en"] < 0.15  # sanity: base on clean read English


def test_language_is_right_or_flagged(corpus_results, corpus_manifest):
    results, _ = corpus_results
    checked = 0
    for m in corpus_manifest:
        if m["kind"] != "speech" or not m["language"] or m["language"] == "en" or float(m["duration_s"]) < 5:
            continue
        r = results[m["path"]].results
        right = r["asr"]["language"] == m["language"]
        assert right or r["text"]["language_confident"] is False, (m["path"], r["asr"]["language"])
        checked += 1
    assert checked >= 6


def test_music_and_noise_have_no_speech_and_no_confident_transcript(corpus_results, corpus_manifest):
    results, _ = corpus_results
    for m in corpus_manifest:
        if m["kind"] != "nonspeech":
            continue
        r = results[m["path"]].results
        assert r["vad"]["speech_ratio"] < 0.15, (m["path"], r["vad"]["speech_ratio"])
        if r["asr"]["status"] == "skipped":
            assert r["asr"]["error_code"] == "NO_SPEECH" and r["text"]["error_code"] == "NO_SPEECH"
            continue
        text = r["asr"]["text"]
        confident = bool(text) and not r["text"]["hallucination"] and r["text"]["language_confident"]
        assert not confident, (m["path"], text)


def test_clean_english_speech_gets_sensible_signal_metadata(corpus_results, corpus_manifest):
    results, _ = corpus_results
    for m in corpus_manifest:
        if m["kind"] != "speech" or m["language"] != "en":
            continue
        r = results[m["path"]].results
        assert r["vad"]["speech_ratio"] > 0.5, m["path"]
        assert r["snr"]["snr_db"] is None or r["snr"]["snr_db"] > 5, m["path"]
        assert -45 < r["levels"]["lufs"] < -5, m["path"]
        assert r["quality"]["ovrl"] > 2.0, m["path"]
        assert r["text"]["hallucination"] is False, (m["path"], r["asr"]["text"])
