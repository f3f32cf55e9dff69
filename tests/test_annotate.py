"""The annotate stage on a real SparkSession with real models: conservation, incrementality, model loads."""
from __future__ import annotations

import json

import pytest
from audio_factory import tone, write_wav
from conftest import REPO, quarantine_rows
from delta.tables import DeltaTable

from jobs.commandline.runner import execute
from jobs.warehouse.catalog import SILVER
from schemas.tables import BRONZE

SIGNAL = ["levels", "vad", "snr", "bandwidth", "pitch"]


def stage(spark, wh, config, job):
    """One command as the CLI runs it (the file outcomes are written by the run's reconcile step)."""
    return execute(spark, config, wh, job).results[job]


def table(spark, wh, spec):
    return [r.asDict(recursive=True) for r in spark.read.format("delta").load(wh.path(spec)).collect()]


def annotate_config(make_config, sources=(), manifests=(), names=SIGNAL, params=None, **annotate):
    return make_config(
        sources=sources, manifests=manifests,
        annotate={"annotators": names, "params": params or {}, "files_per_batch": 1, **annotate},
    )


@pytest.mark.slow
def test_every_bronze_row_ends_in_silver_or_quarantine(spark, corpus_warehouse):
    """Corpus + bad inputs + samples, every annotator with the default models (the shared session run)."""
    wh = corpus_warehouse["warehouse"]
    result = corpus_warehouse["outcome"].results["annotate"]
    bronze = table(spark, wh, BRONZE)
    silver = {r["audio_id"]: r for r in table(spark, wh, SILVER)}
    quarantine = quarantine_rows(spark, wh)
    pre_publish = {r["uri"] for r in quarantine if r["stage"] in ("ingest", "annotate")}
    for row in bronze:
        in_silver = row["audio_id"] in silver and silver[row["audio_id"]]["decode"]["status"] == "ok"
        assert in_silver != (row["uri"] in pre_publish), row["uri"]
    # identical bytes under two names were annotated once
    twins = [r for r in bronze if r["uri"].endswith(("twin_1.wav", "twin_2.wav"))]
    assert twins[0]["audio_id"] == twins[1]["audio_id"]
    assert result.annotated == len({r["audio_id"] for r in bronze if r["error_code"] is None})
    # NaN samples pass ingest (the header is fine) and are caught by decoding
    nan = next(r for r in bronze if r["uri"].endswith("nan_float.wav"))
    assert silver[nan["audio_id"]]["decode"]["error_code"] == "NON_FINITE"
    assert silver[nan["audio_id"]]["asr"]["status"] == "failed"
    q = next(r for r in quarantine if r["uri"].endswith("nan_float.wav"))
    assert q["stage"] == "annotate" and q["error_code"] == "NON_FINITE"
    # real speech is transcribed; silence is not (NO_SPEECH); annotator failures are rows, not crashes
    by_uri = {r["uri"].rsplit("/", 1)[1]: silver[r["audio_id"]] for r in bronze if r["audio_id"] in silver}
    assert "weather" in by_uri["en_weather.wav"]["asr"]["text"].lower()
    assert by_uri["en_weather.wav"]["text"]["wer"] < 0.2
    # (with the shipped cascade the recipe's speech-ratio floor rules it out before asr would say NO_SPEECH)
    assert by_uri["silence.wav"]["asr"]["status"] == "skipped"
    assert by_uri["silence.wav"]["asr"]["error_code"] == "GATED"
    assert by_uri["silence.wav"]["asr"]["error_message"].startswith("speech_ratio_floor:")
    assert by_uri["one_sample.wav"]["bandwidth"]["error_code"] == "TOO_SHORT"
    assert by_uri["one_sample.wav"]["pitch"]["error_code"] == "GATED"  # shorter than a clip may be
    # per-annotator metrics reached the run ledger
    record = corpus_warehouse["outcome"].record
    assert record.stage_seconds["annotate.asr"] > 0 and record.status == "succeeded"


def test_one_model_load_per_worker_across_batches_and_actions(spark, tmp_path, make_config, warehouse_for):
    src = tmp_path / "a"
    for i in range(6):
        write_wav(src / f"t{i}.wav", tone(200 + 40 * i, 1.0 + 0.1 * i))
    config = annotate_config(make_config, sources=[src], names=["levels", "vad", "pitch", "quality"])
    wh = warehouse_for(config)
    stage(spark, wh, config, "ingest")
    stage(spark, wh, config, "annotate")
    # a second action in a later job: new files, same config
    for i in range(6, 10):
        write_wav(src / f"t{i}.wav", tone(200 + 40 * i, 1.0 + 0.1 * i))
    stage(spark, wh, config, "ingest")
    second = stage(spark, wh, config, "annotate")
    assert second.annotated == 4

    rows = table(spark, wh, SILVER)
    loads_by_pid: dict[int, set] = {}
    for r in rows:
        loads_by_pid.setdefault(r["annotated_by"]["pid"], set()).add(r["annotated_by"]["load_id"])
    assert len(rows) == 10
    assert all(len(ids) == 1 for ids in loads_by_pid.values()), loads_by_pid
    assert len({r["annotated_by"]["run_id"] for r in rows}) == 2
    # one batch per file (files_per_batch=1): several batches per worker really went through one load
    assert len(rows) > len(loads_by_pid)


def test_version_or_params_bump_recomputes_one_column_only(spark, tmp_path, make_config, warehouse_for):
    src = tmp_path / "s"
    speech = REPO / "samples" / "audio" / "speech"
    for name in ("en_weather.wav", "de_bahnhof.flac", "es_ciudad.mp3"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes((speech / name).read_bytes())
    config = annotate_config(make_config, sources=[src])
    wh = warehouse_for(config)
    stage(spark, wh, config, "ingest")
    stage(spark, wh, config, "annotate")
    before = {r["audio_id"]: r for r in table(spark, wh, SILVER)}

    # nothing new: no work, no commit
    version = wh.table_version(SILVER)
    assert version == DeltaTable.forPath(spark, wh.path(SILVER)).history(1).first()["version"] >= 1
    again = stage(spark, wh, config, "annotate")
    assert again.candidates == 0 and wh.table_version(SILVER) == version

    # change one annotator's params: only that column (and its dependents: none for snr) is recomputed
    bumped = annotate_config(make_config, sources=[src], params={"snr": {"noise_percentile": 20}})
    result = stage(spark, wh, bumped, "annotate")
    assert result.annotated == 3 and set(result.by_annotator) == {"snr"}
    assert result.by_annotator["snr"]["files"] == 3
    after = {r["audio_id"]: r for r in table(spark, wh, SILVER)}
    for audio_id, row in after.items():
        assert row["snr"]["params_hash"] != before[audio_id]["snr"]["params_hash"]
        for name in ("levels", "vad", "bandwidth", "pitch"):
            assert json.dumps(row[name], sort_keys=True) == json.dumps(before[audio_id][name], sort_keys=True)
    runs = spark.read.format("delta").load(f"{wh.root}/ops/runs").where("job = 'annotate'").collect()
    assert len(runs) == 3 and runs[-1]["stage_seconds"] is not None


def test_a_vad_change_recomputes_what_depends_on_it(spark, tmp_path, make_config, warehouse_for):
    src = tmp_path / "s"
    write_wav(src / "a.wav", tone(300, 1.5))
    config = annotate_config(make_config, sources=[src], names=["levels", "vad", "snr", "pitch"])
    wh = warehouse_for(config)
    stage(spark, wh, config, "ingest")
    stage(spark, wh, config, "annotate")
    bumped = annotate_config(make_config, sources=[src], names=["levels", "vad", "snr", "pitch"],
                             params={"vad": {"threshold": 0.6}})
    result = stage(spark, wh, bumped, "annotate")
    assert set(result.by_annotator) == {"vad", "snr", "pitch"}  # levels does not read vad


def test_groups_by_audio_seconds_put_a_long_file_alone():
    """Groups stay within batch_audio_s; a file over it goes alone, and its group's seconds say so (the
    worker then decodes it in its turn instead of beside the group before it)."""
    from annotators.pipeline import FileInput
    from udfs.annotate import groups_by_audio_seconds

    items = [(FileInput(name, open), seconds) for name, seconds in
             [("a", 100.0), ("b", 150.0), ("c", 10_800.0), ("d", 60.0), ("e", 200.0)]]
    groups = [([i.audio_id for i in group], total) for group, total in groups_by_audio_seconds(items, 300.0)]
    assert groups == [(["a", "b"], 250.0), (["c"], 10_800.0), (["d", "e"], 260.0)]


def test_files_are_dealt_to_tasks_by_audio_seconds(spark):
    """Every file lands on exactly one task, each task in a partition of its own, longest first. From
    one input partition the tasks' audio seconds differ by at most the longest file (LPT packing); from
    several, by at most the sum of each input partition's longest file. (A hash of the ids, the old way,
    put 29 of the 46 corpus files on one task of two.)"""
    from pyspark.sql import functions as F

    from jobs.stages.annotate import _deal_to_tasks

    durations = [float(d) for d in ([240, 200, 180, 90, 60] + [2 + (i * 7919) % 11 for i in range(200)])]
    rows = spark.createDataFrame([(f"id{i:03d}", d) for i, d in enumerate(durations)],
                                 "audio_id string, duration_s double")
    for inputs, n_tasks in ((1, 2), (1, 5), (3, 2), (3, 5)):
        work = rows.repartition(inputs)
        per_input = work.groupBy(F.spark_partition_id().alias("p")).agg(F.max("duration_s").alias("m")).collect()
        bound = sum(r["m"] for r in per_input)
        dealt = _deal_to_tasks(spark, work, n_tasks)
        assert dealt.rdd.getNumPartitions() == n_tasks
        out = dealt.select("audio_id", "duration_s", F.spark_partition_id().alias("p")).collect()
        assert sorted(r["audio_id"] for r in out) == sorted(f"id{i:03d}" for i in range(len(durations)))
        loads = [sum(r["duration_s"] for r in out if r["p"] == p) for p in range(n_tasks)]
        assert max(loads) - min(loads) <= bound, (inputs, n_tasks, loads)
        if inputs == 1:
            assert max(loads) - min(loads) <= max(durations), (n_tasks, loads)
        for p in range(n_tasks):
            mine = [r["duration_s"] for r in out if r["p"] == p]
            assert mine == sorted(mine, reverse=True)
