"""Cross-file batched Whisper against faster-whisper's own per-file loop, on real corpus files.

Batch size 2 over five files (one 60 s two-language recording among 2-11 s clips) makes the lock step
do its interesting parts: a long file taking part in several rounds while short ones finish and new
ones take their slots, several languages in one model call, word timings per file.
"""
from __future__ import annotations

import pytest

from annotators.asr import DECODE_OPTIONS, Asr, as_int16_grid
from annotators.whisper_batch import BatchedWhisper

FILES = ["speech/multilingual/faster_whisper_multilingual_en_de.mp3", "speech/en/LJ001-0002.wav",
         "speech/en/jfk.flac", "speech/multilingual/picovoice_test_fr.wav",
         "speech/multilingual/picovoice_test_de.wav"]


@pytest.fixture(scope="module")
def model():
    from faster_whisper import WhisperModel

    from annotators.models import resolve_whisper

    params = Asr.default_params
    path = resolve_whisper(params["model"], params["cache_dir"]).path
    return WhisperModel(path, device="cpu", compute_type=params["compute_type"], cpu_threads=2)


def test_batched_decoding_gives_the_per_file_transcripts(model, corpus_dir):
    from faster_whisper import decode_audio

    options = {k: Asr.default_params[k] for k in DECODE_OPTIONS}
    audios = [as_int16_grid(decode_audio(str(corpus_dir / f))) for f in FILES]
    batched = BatchedWhisper(model, options, batch_size=2)
    got = batched.transcribe(audios, [None] * len(audios))

    windows = 0
    for name, audio, (segments, info) in zip(FILES, audios, got, strict=True):
        ref_iter, ref_info = model.transcribe(audio, vad_filter=False, **options)
        ref = list(ref_iter)
        assert info.language == ref_info.language, name
        assert info.language_probability == pytest.approx(ref_info.language_probability, abs=0.02), name
        assert [s.text for s in segments] == [s.text for s in ref], name
        assert [t for s in segments for t in (s.start, s.end)] == pytest.approx(
            [t for s in ref for t in (s.start, s.end)], abs=0.02), name
        assert [w.word for s in segments for w in s.words] == [w.word for s in ref for w in s.words], name
        assert [s.temperature for s in segments] == [s.temperature for s in ref], name
        windows += len({s.seek for s in ref})
    assert got[0][1].language == "en" and len(got[0][0]) > 3  # the long file was decoded to its end
    # the decoder saw the windows in batches: each round decodes its windows in one generate call (and
    # again, in a smaller batch, those that fall back to the next temperature, which varies with the
    # CPU's arithmetic), in fewer rounds than windows; on a CPU the encoder took them one at a time
    # (CPU_ENCODE_WINDOWS)
    assert batched.calls["windows"] >= windows and batched.calls["rounds"] < batched.calls["windows"]
    assert batched.calls["generate"] >= batched.calls["rounds"]
    assert batched.calls["encode"] == batched.calls["windows"]


def test_windows_encoded_one_at_a_time_equal_a_batched_call(model, corpus_dir):
    """What makes one window per encoder call safe on a CPU: each row comes out bit for bit as it does
    in a batched call (the outputs, not only the transcripts, are equal)."""
    import numpy as np
    from faster_whisper import decode_audio
    from faster_whisper.audio import pad_or_trim

    options = {k: Asr.default_params[k] for k in DECODE_OPTIONS}
    windows = np.stack([pad_or_trim(model.feature_extractor(decode_audio(str(corpus_dir / f))))
                        for f in FILES[1:4]])
    batched = BatchedWhisper(model, options, batch_size=3)
    assert batched.encode_windows == 1  # a CPU model
    holders: list = []
    one_by_one = np.asarray(batched._encode(windows, holders))
    batched.encode_windows = None  # all windows in one call, as on a GPU
    together = np.asarray(batched._encode(windows, holders))
    assert one_by_one.shape == together.shape == (3, 1500, 512)
    assert np.array_equal(one_by_one, together)


def test_a_forced_language_skips_detection(model, corpus_dir):
    from faster_whisper import decode_audio

    options = {k: Asr.default_params[k] for k in DECODE_OPTIONS}
    audio = as_int16_grid(decode_audio(str(corpus_dir / "speech/en/jfk.flac")))
    (segments, info), = BatchedWhisper(model, options, batch_size=1).transcribe([audio], ["en"])
    assert info.language == "en" and info.language_probability == 1.0 and info.all_language_probs is None
    assert "ask not what your country" in " ".join(s.text for s in segments).lower()
