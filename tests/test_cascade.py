"""The cascade: the expensive annotators run only on audio that can still be curated (annotators.cascade).

The checks come from the shipped recipe and suites (jobs.stages.recipe.cascade_for); the annotators are
the real ones on real recordings of the corpus and two made from it (narrowband, digital silence).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfiltfilt

from annotators.base import OK, SKIPPED, AudioItem
from annotators.cascade import Cascade, Check, gated_check
from annotators.pipeline import FileInput, Pipeline
from annotators.registry import build
from jobs.config import load_config
from jobs.stages.recipe import cascade_for

# cheap and expensive, as in the shipped list (speakers and distillmos load torch: left to the Spark tests)
NAMES = ["levels", "vad", "snr", "bandwidth", "events", "pitch", "quality", "asr", "text", "clips"]


def _same(a, b) -> bool:
    """Equal, floats to 1e-9 relative."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _item(duration_s: float, **upstream) -> AudioItem:
    item = AudioItem("x", np.zeros(int(duration_s * 16000), np.float32), 16000)
    item.upstream = {name: {"status": OK, **values} for name, values in upstream.items()}
    return item


def test_a_check_decides_only_on_a_known_value_and_a_clip_check_only_on_a_file_that_is_one_clip():
    cascade = Cascade((Check("bandwidth_floor", "bandwidth", "effective_hz", min_value=3000.0),
                       Check("speech_ratio_floor", "vad", "speech_ratio", min_value=0.3, whole_file_only=True),
                       Check("clip_duration", None, "duration_s", 1.0, 30.0, whole_file_only=True)), 30.0)
    assert cascade.reason(_item(10, bandwidth={"effective_hz": 8000.0}, vad={"speech_ratio": 0.9})) is None
    why = cascade.reason(_item(10, bandwidth={"effective_hz": 2000.0}, vad={"speech_ratio": 0.9}))
    assert gated_check(why) == "bandwidth_floor" and "2000 < 3000" in why
    assert gated_check(cascade.reason(_item(10, vad={"speech_ratio": 0.1}))) == "speech_ratio_floor"
    assert gated_check(cascade.reason(_item(0.5))) == "clip_duration"
    # a long recording is cut into clips with their own speech ratios: its file-wide ratio decides nothing
    assert cascade.reason(_item(60, vad={"speech_ratio": 0.1})) is None
    # unknown (the cheap annotator failed or did not run): the expensive ones run, as without the cascade
    failed = _item(10, vad={"speech_ratio": 0.1})
    failed.upstream["vad"]["status"] = "failed"
    assert cascade.reason(failed) is None and cascade.reason(_item(10, vad={"speech_ratio": None})) is None


def test_the_checks_are_the_suites_floors_on_cheap_results_and_the_cascade_can_be_turned_off():
    config = load_config(overrides={"warehouse": "unused"})
    ordered = build(list(config.annotate.annotators))
    cascade = cascade_for(config, ordered)
    recipe = config.publish.recipe
    by_name = {c.name: c for c in cascade.checks}
    assert set(by_name) == {"bandwidth_floor", "clip_duration", "speech_ratio_floor", "snr_floor", "not_clipped",
                            "music_ceiling"}
    assert by_name["bandwidth_floor"].min_value == recipe.effective_hz_min
    assert not by_name["bandwidth_floor"].whole_file_only and by_name["snr_floor"].whole_file_only
    assert by_name["music_ceiling"].max_value == recipe.music_ratio_max
    assert cascade.whole_file_max_s == config.clips.max_s
    assert all(not a.expensive for a in ordered if a.name in {c.annotator for c in cascade.checks})
    # a recipe change moves the checks (and so the hash a gated result is current under)
    looser = dataclasses.replace(config, publish=dataclasses.replace(
        config.publish, recipe=dataclasses.replace(recipe, speech_ratio_min=0.1)))
    assert cascade_for(looser, ordered).digest != cascade.digest
    # without events configured, its ceiling is not a check; turned off, no cascade
    assert "music_ceiling" not in {c.name for c in cascade_for(config, [a for a in ordered if a.name != "events"]).checks}
    off = dataclasses.replace(config, annotate=dataclasses.replace(config.annotate, cascade=False))
    assert cascade_for(off, ordered) is None


@pytest.fixture(scope="module")
def archive(tmp_path_factory, corpus_dir):
    """Speech (kept), and what a cheap check rules out: noise, birdsong, music, a narrowband copy of
    speech, digital silence."""
    root = tmp_path_factory.mktemp("cascade")
    speech, sr = sf.read(corpus_dir / "speech/en/jfk.flac", dtype="float32")
    speech = speech.mean(axis=1) if speech.ndim > 1 else speech
    narrow = sosfiltfilt(butter(8, 1500, fs=sr, output="sos"), speech).astype(np.float32)
    sf.write(root / "narrowband.wav", narrow, sr)
    sf.write(root / "silence.wav", np.zeros(3 * 16000, np.float32), 16000)
    return {
        "speech": corpus_dir / "speech/en/jfk.flac",
        "speech2": corpus_dir / "speech/en/LJ001-0004.wav",
        "noise": corpus_dir / "nonspeech/speechbrain_noise2.wav",
        "birdsong": corpus_dir / "nonspeech/robin-bird-whistling.hq.ogg",
        "music": corpus_dir / "nonspeech/Kevin_MacLeod_-_Vibe_Ace.ogg",
        "narrowband": root / "narrowband.wav",
        "silence": root / "silence.wav",
    }


def test_gated_files_skip_the_expensive_annotators_and_kept_files_get_the_same_results(archive):
    config = load_config(overrides={"warehouse": "unused"})
    pipeline = Pipeline(build(NAMES, {"clips": dataclasses.asdict(config.clips)}))
    pipeline.setup()
    cascade = cascade_for(config, pipeline.annotators)
    inputs = lambda: [FileInput(name, lambda p=path: open(p, "rb")) for name, path in archive.items()]  # noqa: E731
    without = {o.audio_id: o.results for o in pipeline.run(inputs())}
    ran = {o.audio_id: o.results for o in pipeline.run(inputs(), cascade=cascade)}
    expensive = {a.name for a in pipeline.annotators if a.expensive}
    assert expensive == {"pitch", "quality", "asr", "text"}

    gated = {k for k, r in ran.items() if r["asr"]["error_code"] == "GATED"}
    assert {"narrowband", "silence", "noise"} <= gated and not gated & {"speech", "speech2"}
    recipe = config.publish.recipe
    for k in gated:
        results = ran[k]
        check = gated_check(results["asr"]["error_message"])
        for name in expensive:  # every expensive result: skipped, GATED, naming the same check
            assert (results[name]["status"], results[name]["error_code"]) == (SKIPPED, "GATED"), (k, name)
            assert gated_check(results[name]["error_message"]) == check
            assert results[name]["params_hash"] != without[k][name]["params_hash"]  # current under these checks
        # the check fails on what the run without the cascade measured: the file would be quarantined for it
        clip = without[k]["clips"]["clips"][0]
        if check == "bandwidth_floor":
            assert without[k]["bandwidth"]["effective_hz"] < recipe.effective_hz_min
        else:
            assert len(without[k]["clips"]["clips"]) == 1 and clip["whole_file"]
            bounds = {"speech_ratio_floor": ("speech_ratio", recipe.speech_ratio_min, None),
                      "snr_floor": ("snr_db", recipe.snr_db_min, None),
                      "not_clipped": ("clipping_ratio", None, recipe.clipping_ratio_max),
                      "music_ceiling": ("music_ratio", None, recipe.music_ratio_max),
                      "clip_duration": ("duration_s", config.clips.min_s, config.clips.max_s)}[check]
            value = clip[bounds[0]]
            assert (bounds[1] is not None and value < bounds[1]) or (bounds[2] is not None and value > bounds[2])
        # the cheap results and the clips' cheap measures are what they were
        for name in ("levels", "vad", "snr", "bandwidth", "events"):
            assert ran[k][name] == without[k][name]
        for mine, theirs in zip(ran[k]["clips"]["clips"], without[k]["clips"]["clips"], strict=True):
            for column in ("start_s", "end_s", "speech_ratio", "snr_db", "music_ratio", "clipping_ratio"):
                assert mine[column] == theirs[column]
    # the kept files: every result as without the cascade (the expensive annotators saw the same input).
    # Not where Whisper fell back to sampling (temperature > 0: random draws, different on every run) and
    # floats to the last bits (lingua's confidences vary there from run to run)
    sampled = {k for k in set(ran) - gated for r in (ran[k], without[k])
               if any(seg["temperature"] for seg in r["asr"]["segments"] or [])}
    assert {"speech", "speech2"} <= set(ran) - gated - sampled
    for k in set(ran) - gated - sampled:
        for name in ran[k]:
            assert _same(ran[k][name], without[k][name]), (k, name)


# ---- through `voxlake run`: the same archive with the cascade (shipped) and without

MEASURED = {"dnsmos_measured", "language_known", "transcript_present", "text_checked", "speakers_measured"}


def _archive_run(spark, root, sources, cascade: bool, recipe: dict | None = None):
    from conftest import LEAN_ANNOTATE, LEAN_RECIPE

    from jobs.commandline.runner import execute
    from jobs.warehouse.store import Warehouse

    config = load_config(overrides={
        "warehouse": str(root), "annotate": {**LEAN_ANNOTATE, "files_per_batch": 4, "cascade": cascade,
                                             "params": {"asr": {"model": "tiny.en"}}},
        "publish": {"recipe": {**LEAN_RECIPE, **(recipe or {})}}}, sources=sources)
    wh = Warehouse(spark, config.warehouse)
    return wh, config, execute(spark, config, wh, "run")


def _rows(spark, wh, spec, *columns) -> set[tuple]:
    return {tuple(r) for r in spark.read.format("delta").load(wh.path(spec)).select(*columns).collect()}


def _by_file(spark, wh) -> dict[str, dict]:
    """file name -> its silver asr result and, when quarantined, its failed expectations."""
    from conftest import quarantine_rows

    from jobs.warehouse.catalog import SILVER

    out = {r["uri"].rsplit("/", 1)[1]: {"asr": r["asr"].asDict(recursive=True), "failed": None}
           for r in spark.read.format("delta").load(wh.path(SILVER)).select("uri", "asr").collect()}
    for q in quarantine_rows(spark, wh):
        out[q["uri"].rsplit("/", 1)[1]]["failed"] = set(q["failed_expectations"] or [])
    return out


@pytest.fixture(scope="module")
def runs(spark, archive, tmp_path_factory):
    import shutil

    root = tmp_path_factory.mktemp("cascade_runs")
    src = root / "audio"
    src.mkdir()
    for name, path in archive.items():
        if name != "music":  # a long recording: the corpus and clips tests run those
            shutil.copyfile(path, src / f"{name}{path.suffix}")
    on = _archive_run(spark, root / "on", [str(src)], cascade=True)
    off = _archive_run(spark, root / "off", [str(src)], cascade=False)
    return {"on": on, "off": off, "src": src}


@pytest.mark.slow
def test_the_same_archive_curates_the_same_with_and_without_the_cascade(spark, runs):
    from conftest import assert_invariant

    from schemas.gold import CLIPS, UTTERANCES

    (wh_on, _, first), (wh_off, _, second) = runs["on"], runs["off"]
    assert first.exit_code == second.exit_code == 0
    for wh in (wh_on, wh_off):
        assert_invariant(spark, wh)
    # identical gold and clips
    assert _rows(spark, wh_on, UTTERANCES, "audio_id", "transcript", "language") == \
        _rows(spark, wh_off, UTTERANCES, "audio_id", "transcript", "language")
    assert _rows(spark, wh_on, CLIPS, "clip_id", "text", "start_s", "end_s") == \
        _rows(spark, wh_off, CLIPS, "clip_id", "text", "start_s", "end_s")
    on, off = _by_file(spark, wh_on), _by_file(spark, wh_off)
    gated = {name for name, f in on.items() if f["asr"]["error_code"] == "GATED"}
    assert {"narrowband.wav", "noise.wav", "silence.wav"} <= gated, on
    assert not any(f["asr"]["error_code"] == "GATED" for f in off.values())
    for name in gated:
        check = gated_check(on[name]["asr"]["error_message"])
        # quarantined in both runs for the cheap check; with the cascade, not for what it did not compute
        assert check in on[name]["failed"] and check in off[name]["failed"], (name, on[name], off[name])
        assert not on[name]["failed"] & MEASURED, (name, on[name]["failed"])
    assert first.results["annotate"].by_annotator["asr"]["ok"] < second.results["annotate"].by_annotator["asr"]["ok"]


@pytest.mark.slow
def test_a_loosened_floor_computes_only_the_newly_needed_asr(spark, runs, tmp_path):
    from conftest import copy_of

    wh, config = copy_of(spark, *runs["on"][:2], tmp_path / "wh")
    before = _by_file(spark, wh)
    looser = config.publish.recipe.effective_hz_min / 4  # the narrowband copy passes now
    _, _, again = _archive_run(spark, wh.root, [str(runs["src"])], cascade=True, recipe={"effective_hz_min": looser})
    after = _by_file(spark, wh)
    assert before["narrowband.wav"]["asr"]["error_code"] == "GATED"
    assert after["narrowband.wav"]["asr"]["status"] == "ok" and after["narrowband.wav"]["asr"]["text"]
    asr = again.results["annotate"].by_annotator["asr"]
    assert asr["ok"] == 1, asr  # the narrowband file alone: the kept files were not selected again
    for name, f in before.items():
        if name != "narrowband.wav" and f["asr"]["error_code"] != "GATED":
            assert after[name]["asr"] == f["asr"], name
        elif name != "narrowband.wav":  # still gated, now under the looser checks
            assert after[name]["asr"]["error_code"] == "GATED" and \
                after[name]["asr"]["params_hash"] != f["asr"]["params_hash"]
