"""Training clips: the cutter's rules on made-up timings, then a long-form recording built from the corpus
through `voxlake run` and its lifecycle (rerun, recipe change, clip-rule change, bytes replaced, file
deleted) and the clip exports, checked against the known placement of every piece."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from annotators.clips import Rules, speaker_share
from annotators.cutting import cut, trim_to_speech, units_of

RULES = Rules(min_s=1.0, max_s=30.0, pad_s=0.2, min_pause_s=0.1, split_pause_s=1.0, split_on_speaker_change=True)


def words_of(spec: list[tuple[float, float, str]]) -> list[dict]:
    return [{"word": w, "start_s": a, "end_s": b, "probability": 0.9} for a, b, w in spec]


def sentences(t0: float, n_sentences: int, words_each: int = 8, word_s: float = 0.4, gap_s: float = 0.5):
    """Words of `n_sentences` sentences, touching words inside one, a pause of gap_s between them."""
    out, t = [], t0
    for k in range(n_sentences):
        for j in range(words_each):
            end = "." if j == words_each - 1 else ""
            out.append((t, t + word_s, f"w{k}_{j}{end}"))
            t += word_s
        t += gap_s
    return out


def clip_bounds(words, speech=None, turns=(), duration=None, rules=RULES):
    speech = speech if speech is not None else [{"start_s": w[0], "end_s": w[1]} for w in words]
    units = units_of(words_of(words), speech, list(turns), rules.split_pause_s)
    duration = duration or words[-1][1] + 1.0
    return units, cut(units, speech, duration, rules)


def test_clips_end_at_sentence_ends_within_bounds_and_never_inside_a_word():
    words = sentences(1.0, 12)  # 12 sentences of 3.2 s with 0.5 s pauses: 44 s
    units, clips = clip_bounds(words)
    assert len(clips) >= 2
    for start, end, members in clips:
        assert RULES.min_s <= end - start <= RULES.max_s
        assert units[members[-1]].word["word"].endswith(".")  # every cut after a sentence end
        for a, b, _ in words:  # a boundary is never strictly inside a word
            assert not (a < start < b) and not (a < end < b)
    for (_, end, _), (start, _, _) in zip(clips, clips[1:], strict=False):
        assert end <= start  # neighbours never overlap


def test_a_long_pause_always_splits_and_no_clip_spans_it():
    first, second = sentences(0.5, 2), sentences(20.0, 2)  # 12 s of music between them (no words, no VAD)
    _, clips = clip_bounds(first + second)
    assert len(clips) == 2
    assert clips[0][1] <= first[-1][1] + RULES.pad_s + 1e-9 and clips[1][0] >= second[0][0] - RULES.pad_s - 1e-9


def test_a_speaker_change_splits_in_the_longest_pause_between_the_voices():
    a, b = sentences(0.5, 2), sentences(8.0, 2)  # one voice, a 0.5 s pause, another voice
    turns = [{"start_s": 0.0, "end_s": 7.6, "speaker": 0}, {"start_s": 7.9, "end_s": 20.0, "speaker": 1}]
    units, clips = clip_bounds(a + b, turns=turns)
    assert [len(m) for _, _, m in clips] == [len(a), len(b)]
    assert [units[m[0]].label for _, _, m in clips] == [0, 1]
    assert speaker_share(turns, clips[1][0], clips[1][1])[1] == 1.0


def test_a_word_stretched_over_noise_keeps_only_its_speech():
    # Whisper lets "then" run from 111.1 s across 8.6 s of noise; the VAD heard it at 119.7 s
    speech = [{"start_s": 105.0, "end_s": 110.9}, {"start_s": 119.7, "end_s": 122.3}]
    assert trim_to_speech(111.1, 119.8, speech, 1.0) == (pytest.approx(119.2), pytest.approx(119.8))
    assert trim_to_speech(3.0, 3.4, [{"start_s": 2.0, "end_s": 5.0}], 1.0) == (3.0, 3.4)  # inside speech: kept
    assert trim_to_speech(3.0, 3.4, [], 1.0) == (3.0, 3.4)  # no VAD speech under it: kept


def test_a_passage_longer_than_max_s_without_a_pause_is_one_clip_the_gate_rejects():
    words = [(0.5 + 0.4 * k, 0.9 + 0.4 * k, f"w{k}") for k in range(100)]  # 40 s of touching words
    _, clips = clip_bounds(words)
    assert len(clips) == 1 and clips[0][1] - clips[0][0] > RULES.max_s


def test_a_long_recordings_mos_windows_are_centred_in_its_clips_and_topped_up_from_the_grid():
    """The file-level MOS annotators score a long recording on windows centred in the clips the shipped rules
    cut (spread over them when there are more clips than windows), and top up with evenly spaced windows that
    overlap none of those when fewer clips are a window long; a file no longer than max_s keeps the grid."""
    from annotators.base import OK, AudioItem
    from annotators.cutting import clip_spans, clip_window_starts

    window = 16000 * 5
    # three passages of 4 sentences (14.3 s each) between 12 s of silence: three clips, each a window long
    words = sentences(1.0, 4) + sentences(28.0, 4) + sentences(55.0, 4)
    item = AudioItem("long", np.zeros(16000 * 80, np.float32), 16000)
    item.upstream = {"vad": {"status": OK, "speech_segments": [{"start_s": a, "end_s": b} for a, b, _ in words]},
                     "asr": {"status": OK, "segments": [{"words": words_of(words)}]}}
    spans = clip_spans(item, Rules())
    assert len(spans) == 3
    grid = list(range(0, 16000 * 80 - window + 1, window))  # 16 windows of 5 s

    def holder(start):
        return [k for k, (a, b) in enumerate(spans) if a * 16000 <= start and start + window <= b * 16000]

    two = clip_window_starts(item, window, 2, grid)
    assert [holder(s) for s in two] == [[0], [2]]  # the first and last clip's, evenly over the three
    five = clip_window_starts(item, window, 5, grid)
    assert len(five) == 5 and sorted(k for s in five for k in holder(s))[:3] == [0, 1, 2]
    assert all(b - a >= window for a, b in zip(five, five[1:], strict=False))  # none overlap
    for a, b in spans:  # the placed windows are the clips' centre windows
        assert int(a * 16000) + (int(b * 16000) - int(a * 16000) - window) // 2 in five
    short = AudioItem("short", np.zeros(16000 * 20, np.float32), 16000, upstream=item.upstream)
    assert clip_window_starts(short, window, 2, grid[:4]) == grid[:4]


def test_a_short_file_is_one_clip_spanning_it_with_the_files_own_measures():
    from annotators.base import OK, AudioItem
    from annotators.clips import Clips

    item = AudioItem("a", np.zeros(16000 * 5, np.float32), 16000)
    words = [{"word": "Hello.", "start_s": 1.0, "end_s": 1.5, "probability": 0.8}]
    item.upstream = {
        "vad": {"status": OK, "speech_segments": [{"start_s": 0.9, "end_s": 1.6}], "speech_ratio": 0.14},
        "asr": {"status": OK, "text": "Hello.", "language": "en", "language_prob": 0.99, "mean_avg_logprob": -0.2,
                "max_compression_ratio": 0.6, "segments": [{"start_s": 1.0, "end_s": 1.5, "avg_logprob": -0.2,
                                                            "compression_ratio": 0.6, "words": words}]},
        "snr": {"status": OK, "snr_db": 31.5}, "quality": {"status": OK, "ovrl": 3.1},
        "text": {"status": OK, "words_per_s": 1.4, "has_pii": False, "hallucination": False,
                 "language_agrees": True},
    }
    annotator = Clips({k: getattr(RULES, k) for k in Rules.__dataclass_fields__})
    annotator.setup()
    out = annotator.annotate(item)
    assert out["n_clips"] == 1
    clip = out["clips"][0]
    assert clip["whole_file"] and (clip["start_s"], clip["end_s"]) == (0.0, 5.0)
    assert (clip["snr_db"], clip["dnsmos_ovrl"], clip["speech_ratio"], clip["words_per_s"]) == (31.5, 3.1, 0.14, 1.4)
    assert clip["text"] == "Hello." and clip["words"][0]["start_s"] == 1.0


def test_a_long_recording_with_nothing_to_cut_is_judged_whole():
    from annotators.base import OK, AudioItem
    from annotators.clips import Clips

    item = AudioItem("music", np.zeros(16000 * 45, np.float32), 16000)
    item.upstream = {"vad": {"status": OK, "speech_segments": [], "speech_ratio": 0.0},
                     "events": {"status": OK, "music_ratio": 0.9, "patch_classes": [1] * 92}}
    annotator = Clips({k: getattr(RULES, k) for k in Rules.__dataclass_fields__})
    annotator.setup()
    out = annotator.annotate(item)
    assert out["n_clips"] == 1 and out["clips"][0]["whole_file"] and out["clips"][0]["duration_s"] == 45.0
    assert out["clips"][0]["music_ratio"] == 0.9 and out["clips"][0]["text"] is None


def test_the_clips_section_is_the_annotators_rules():
    """The config's `clips:` section and the annotator's own defaults name the same rules, with the same
    values (a standalone Clips() cuts as the shipped config does)."""
    import dataclasses

    from annotators.clips import Clips
    from jobs.config import load_config

    section = dataclasses.asdict(load_config(overrides={"warehouse": "unused"}).clips)
    assert set(section) == set(Rules.__dataclass_fields__)
    assert section == {k: Clips.default_params[k] for k in section}


def test_the_tts_recipe_is_a_valid_config_and_old_duration_keys_say_where_they_went():
    from conftest import REPO

    from jobs.config import ConfigError, load_config

    tts = load_config(str(REPO / "deploy" / "recipes" / "tts.yaml"), overrides={"warehouse": "unused"})
    assert (tts.clips.min_s, tts.clips.max_s, tts.publish.recipe.max_speakers) == (3.0, 15.0, 1)
    with pytest.raises(ConfigError, match="duration_s_max' was replaced by clips.max_s"):
        load_config(overrides={"warehouse": "unused", "publish": {"recipe": {"duration_s_max": 60.0}}})
    with pytest.raises(ConfigError, match=r"clips.min_s \(20.0\) must be above 0 and below clips.max_s \(15.0\)"):
        load_config(overrides={"warehouse": "unused", "clips": {"min_s": 20.0, "max_s": 15.0}})


# ------------------------------------------------------------------ a long recording through voxlake run

TOLERANCE_S = 0.05  # pocketsphinx's word edges are 10 ms frames, and an edge is only that exact


def _table(spark, wh, spec) -> list[dict]:
    return [r.asDict(recursive=True) for r in spark.read.format("delta").load(wh.path(spec)).collect()]


def _overlap(a0, a1, b0, b1) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


@pytest.fixture(scope="module")
def longform_run(spark, tmp_path_factory):
    """A 3-minute long-form recording (longform.build: the main reader's first 20 utterances, with music,
    other voices, noise and silence between her passages) and two short corpus files, run once with
    `max_speakers: 1`. The tests read it (and export from it); none changes it."""
    import longform
    from conftest import CORPUS

    from jobs.commandline.runner import execute
    from jobs.config import load_config
    from jobs.warehouse.store import Warehouse

    root = tmp_path_factory.mktemp("longform")
    src = root / "audio"
    pieces = longform.build(src / "long.wav", limit=20)
    for rel in ("speech/en/jfk.flac", "speech/en/librispeech_3436-172162-0000.ogg"):
        shutil.copyfile(CORPUS / rel, src / rel.rsplit("/", 1)[1])
    config = load_config(overrides={"warehouse": str(root / "wh"), "publish": {"recipe": {"max_speakers": 1}}},
                         sources=[str(src)])
    wh = Warehouse(spark, config.warehouse)
    outcome = execute(spark, config, wh, "run")
    assert outcome.exit_code == 0, outcome.record.message
    from annotators.decode import decode

    with open(src / "long.wav", "rb") as f:
        samples = decode(f).samples
    return {"config": config, "wh": wh, "src": src, "pieces": pieces,
            "reference_words": longform.reference_words(samples, pieces)}


@pytest.mark.slow
def test_a_long_recording_is_curated_through_clean_single_speaker_clips(spark, longform_run):
    from conftest import assert_invariant

    from annotators.distillmos import WINDOW
    from annotators.quality import WINDOW_S
    from jobs.warehouse.catalog import CLIP_STATE, CLIPS, SILVER
    from schemas.gold import UTTERANCES

    wh, pieces, rules = longform_run["wh"], longform_run["pieces"], longform_run["config"].clips
    gold = {r["uri"].rsplit("/", 1)[1]: r for r in _table(spark, wh, UTTERANCES)}
    assert "long.wav" in gold and gold["long.wav"]["duration_s"] > 150  # no file-length ceiling at the gate
    long_id = gold["long.wav"]["audio_id"]
    clips = [c for c in _table(spark, wh, CLIPS) if c["audio_id"] == long_id]
    assert gold["long.wav"]["clips_curated"] == len(clips) > 5
    assert gold["long.wav"]["curated_s"] == pytest.approx(sum(c["duration_s"] for c in clips))
    for c in clips:
        where = f"{c['clip_id']} [{c['start_s']:.2f}, {c['end_s']:.2f}]"
        assert rules.min_s <= c["duration_s"] <= rules.max_s, where
        for a, b, word in longform_run["reference_words"]:
            for edge in (c["start_s"], c["end_s"]):
                assert not (a + TOLERANCE_S < edge < b - TOLERANCE_S), f"{where} cuts '{word}' [{a:.2f}, {b:.2f}]"
        noise = sum(_overlap(p.start_s, p.end_s, c["start_s"], c["end_s"]) for p in pieces
                    if p.kind in ("music", "noise"))
        assert noise <= 1.0, f"{where} holds {noise:.1f} s of music or noise"
        voices: dict[str, float] = {}
        for p in pieces:
            if p.kind in ("main", "other"):
                who = "main" if p.kind == "main" else p.source
                voices[who] = voices.get(who, 0.0) + _overlap(p.start_s, p.end_s, c["start_s"], c["end_s"])
        assert max(voices.values()) / sum(voices.values()) >= 0.95, f"{where} mixes voices: {voices}"
        assert c["words"] and all(0 <= w["start_s"] <= w["end_s"] <= c["duration_s"] + 1e-6 for w in c["words"])
        assert c["text"]  # (speaker_purity >= 0.95 is the gate's own floor: the placement check above is the test)
    main_s = sum(p.end_s - p.start_s for p in pieces if p.kind == "main")
    curated_main = sum(_overlap(p.start_s, p.end_s, c["start_s"], c["end_s"]) for p in pieces if p.kind == "main"
                       for c in clips)
    assert curated_main / main_s >= 0.8, f"{curated_main:.0f} of {main_s:.0f} s of the main reader curated"
    # the file-level MOS windows lie in its clips (the shipped rules cut them), one per clip at least a window long
    # while there are such clips: a window is scored once, for the file and for the clip holding it
    silver = [r for r in _table(spark, wh, SILVER) if r["audio_id"] == long_id][0]
    candidates = silver["clips"]["clips"]
    for name, column, window_s in (("quality", "dnsmos_ovrl", WINDOW_S), ("distillmos", "distillmos", WINDOW / 16000)):
        windows = silver[name]["windows"]
        assert len(windows) == silver[name]["n_windows"] >= 2, silver[name]
        inside = {c["clip_index"]: [w["score"] for w in windows
                                    if c["start_s"] - 1e-6 <= w["start_s"] <= w["start_s"] + window_s <= c["end_s"] + 1e-6]
                  for c in candidates}
        long_enough = sum(1 for c in candidates if c["duration_s"] >= window_s)
        assert sum(len(v) for v in inside.values()) >= min(len(windows), long_enough), (name, windows, candidates)
        for c in candidates:
            if inside[c["clip_index"]]:
                assert c[column] == pytest.approx(np.mean(inside[c["clip_index"]])), (name, c["clip_index"])
    # every candidate clip is in exactly one of gold.clips and the clip quarantine
    state = [r for r in _table(spark, wh, CLIP_STATE) if r["audio_id"] == long_id]
    assert {r["clip_id"] for r in state if r["status"] == "curated"} == {c["clip_id"] for c in clips}
    assert all(r["failed_expectations"] for r in state if r["status"] == "quarantined")
    # the short files: one clip each, spanning the file
    for name in ("jfk.flac", "librispeech_3436-172162-0000.ogg"):
        if name in gold:
            mine = [c for c in _table(spark, wh, CLIPS) if c["audio_id"] == gold[name]["audio_id"]]
            assert len(mine) == 1 and mine[0]["whole_file"] and mine[0]["start_s"] == 0.0
            assert mine[0]["duration_s"] == pytest.approx(gold[name]["duration_s"])
    assert_invariant(spark, wh)


@pytest.mark.slow
def test_clip_lifecycle_rerun_recipe_change_rule_change_replaced_and_deleted(spark, tmp_path):
    """A 1.5-minute long-form recording and a short file: a rerun writes nothing; a changed floor re-judges
    without annotating; changed clip rules re-cut without ASR; replaced bytes and a deleted file leave no
    stale clip. The lifecycle is the point, not the measures: the lean annotators and the smallest ASR model
    (as in test_curation), with the shipped gate."""
    import longform
    from conftest import CORPUS, LEAN_ANNOTATE, LEAN_RECIPE, assert_invariant

    from jobs.commandline.runner import execute
    from jobs.config import load_config, with_overrides
    from jobs.warehouse.catalog import CLIP_STATE, CLIPS, SILVER
    from jobs.warehouse.store import Warehouse
    from schemas.gold import UTTERANCES

    src = tmp_path / "audio"
    longform.build(src / "long.wav", limit=8, inserts=("music", "other"))
    shutil.copyfile(CORPUS / "speech/en/jfk.flac", src / "jfk.flac")
    config = load_config(overrides={
        "warehouse": str(tmp_path / "wh"), "annotate": {**LEAN_ANNOTATE, "params": {"asr": {"model": "tiny.en"}}},
        "publish": {"recipe": LEAN_RECIPE}}, sources=[str(src)])
    wh = Warehouse(spark, config.warehouse)
    assert execute(spark, config, wh, "run").exit_code == 0
    tables = (SILVER, UTTERANCES, CLIPS, CLIP_STATE)
    versions = {t.qualified: wh.table_version(t) for t in tables}
    rerun = execute(spark, config, wh, "run")
    assert rerun.exit_code == 0 and {t.qualified: wh.table_version(t) for t in tables} == versions

    # a floor changed: judged again, nothing annotated, the clips that miss it leave gold
    before = {c["clip_id"]: c for c in _table(spark, wh, CLIPS)}
    floor = sorted(c["snr_db"] for c in before.values())[len(before) // 2]  # half the clips miss it
    strict = with_overrides(config, {"publish": {"recipe": {"snr_db_min": floor}}})
    judged = execute(spark, strict, wh, "run")
    assert judged.exit_code == 0 and judged.results["annotate"].annotated == 0
    after = {c["clip_id"]: c for c in _table(spark, wh, CLIPS)}
    assert set(after) == {k for k, c in before.items() if c["snr_db"] >= floor} and len(after) < len(before)
    dropped = [r for r in _table(spark, wh, CLIP_STATE) if r["clip_id"] in set(before) - set(after)]
    assert dropped and all("snr_floor" in r["failed_expectations"] for r in dropped)
    assert_invariant(spark, wh)

    # the clip rules changed: re-cut and re-judged, ASR not run again
    asr_before = {r["audio_id"]: r["asr"] for r in _table(spark, wh, SILVER)}
    tts = with_overrides(config, {"clips": {"min_s": 3.0, "max_s": 15.0}})
    recut = execute(spark, tts, wh, "run")
    assert recut.exit_code == 0
    ran = {name for name, n in recut.results["annotate"].by_annotator.items() if n["files"]}
    assert ran == {"clips"}, recut.results["annotate"].by_annotator
    assert {r["audio_id"]: r["asr"] for r in _table(spark, wh, SILVER)} == asr_before
    clips = _table(spark, wh, CLIPS)
    assert clips and all(3.0 <= c["duration_s"] <= 15.0 for c in clips)
    assert_invariant(spark, wh)

    # bytes replaced (the long file becomes a short one) and a file deleted: no stale clip stays anywhere
    old = {r["audio_id"] for r in _table(spark, wh, UTTERANCES)}
    shutil.copyfile(CORPUS / "speech/en/LJ001-0001.wav", src / "long.wav")
    (src / "jfk.flac").unlink()
    assert execute(spark, tts, wh, "run").exit_code == 0
    gold = {r["audio_id"] for r in _table(spark, wh, UTTERANCES)}
    assert gold and not gold & old
    assert {c["audio_id"] for c in _table(spark, wh, CLIPS)} == gold
    assert {r["audio_id"] for r in _table(spark, wh, CLIP_STATE)} == gold
    assert_invariant(spark, wh)


@pytest.mark.slow
def test_clip_exports_load_in_their_libraries_and_match_gold_clips(spark, longform_run, tmp_path):
    import glob
    import io
    import json as jsonlib

    import datasets
    import soundfile as sf
    import webdataset as wds
    from lhotse import CutSet, RecordingSet, SupervisionSet, combine

    from jobs.commands.export import ExportRequest, run_export
    from jobs.warehouse.catalog import CLIPS

    config, wh = longform_run["config"], longform_run["wh"]
    gold = {c["clip_id"]: c for c in _table(spark, wh, CLIPS)}
    assert any(not c["whole_file"] for c in gold.values())
    out = {fmt: run_export(spark, config, wh, ExportRequest(format=fmt, out=str(tmp_path / fmt)))
           for fmt in ("nemo", "lhotse", "hf", "webdataset")}
    assert all(s["unit"] == "clips" and s["rows"] == len(gold) for s in out.values())
    assert out["nemo"]["clip_rules"]["max_s"] == config.clips.max_s and out["nemo"]["clip_params_hashes"]

    lines = [jsonlib.loads(x) for p in sorted(glob.glob(str(tmp_path / "nemo" / "manifest_*.json"))) for x in open(p)]
    assert {x["clip_id"] for x in lines} == set(gold)
    for x in lines:
        c = gold[x["clip_id"]]
        assert x["offset"] == pytest.approx(c["start_s"], abs=1e-3)
        assert x["duration"] == pytest.approx(c["duration_s"], abs=1e-3)
        assert x["text"] == c["text"] or c["whole_file"]

    cuts = CutSet.from_manifests(
        recordings=combine([RecordingSet.from_file(p) for p in sorted(glob.glob(str(tmp_path / "lhotse" / "recordings_*")))]),
        supervisions=combine([SupervisionSet.from_file(p)
                              for p in sorted(glob.glob(str(tmp_path / "lhotse" / "supervisions_*")))]))
    sups = {s.id: s for cut in cuts for s in cut.supervisions}
    assert set(sups) == set(gold)
    for cid, s in sups.items():
        c = gold[cid]
        assert s.start == pytest.approx(c["start_s"], abs=1e-3) and s.duration == pytest.approx(c["duration_s"], abs=1e-3)
        first = s.alignment["word"][0]
        assert first.start == pytest.approx(c["start_s"] + c["words"][0]["start_s"], abs=2e-3)

    ds = datasets.load_dataset("parquet", data_files=sorted(glob.glob(str(tmp_path / "hf" / "data" / "*.parquet"))),
                               split="train")
    assert isinstance(ds.features["audio"], datasets.Audio)
    for row in ds.cast_column("audio", datasets.Audio(decode=False)):
        audio, rate = sf.read(io.BytesIO(row["audio"]["bytes"]))
        assert len(audio) / rate == pytest.approx(gold[row["clip_id"]]["duration_s"], abs=0.01)
        assert row["text"] == gold[row["clip_id"]]["text"] or gold[row["clip_id"]]["whole_file"]

    seen = set()
    for sample in wds.WebDataset(sorted(glob.glob(str(tmp_path / "webdataset" / "shard-*.tar"))), shardshuffle=False):
        meta = jsonlib.loads(sample["json"])
        audio, rate = sf.read(io.BytesIO(sample["flac"]))
        assert sample["__key__"] == meta["clip_id"]
        assert len(audio) / rate == pytest.approx(gold[meta["clip_id"]]["duration_s"], abs=0.01)
        seen.add(meta["clip_id"])
    assert seen == set(gold)
