"""Ingest on a real SparkSession with Delta: samples, the corpus, generated bad inputs, reruns."""
from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest
from audio_factory import make_bad_inputs, tone, write_wav
from conftest import REPO, quarantine_rows
from delta.tables import DeltaTable

from jobs.commandline.runner import execute
from jobs.warehouse.ledger import RunRecord, write_run
from schemas.tables import BRONZE, FILE_STATE, RUNS


def ingest(spark, wh, config):
    """`voxlake ingest` as the CLI runs it (the outcomes are written by the run's reconcile step)."""
    return execute(spark, config, wh, "ingest").results["ingest"]


def bronze(spark, wh):
    return {r["uri"]: r.asDict() for r in spark.read.format("delta").load(wh.path(BRONZE)).collect()}


def quarantine(spark, wh):
    return {r["uri"]: r for r in quarantine_rows(spark, wh)}


def rel(uri: str, root) -> str:
    return uri.split(str(root) + "/", 1)[1]


def test_bad_inputs_each_get_a_specific_code_and_nothing_fails(spark, tmp_path, make_config, warehouse_for):
    src = tmp_path / "inputs"
    expected = make_bad_inputs(src)
    config = make_config(sources=[src])
    wh = warehouse_for(config)

    result = ingest(spark, wh, config)

    rows = bronze(spark, wh)
    got = {rel(uri, src): row for uri, row in rows.items()}
    assert set(got) == set(expected), "every listed audio file appears exactly once (readme.txt is not audio)"
    for name, code in expected.items():
        assert got[name]["error_code"] == code, (name, got[name]["error_message"])
        assert got[name]["ingest_run_id"] and got[name]["size_bytes"] is not None
    assert result.listed == len(expected)
    # the summary's counts (taken while the probe results were written) agree with the rows
    codes = Counter(code for code in expected.values() if code)
    assert result.errors_by_code == dict(codes) and result.quarantined == sum(codes.values())
    assert result.probed_ok == len(expected) - sum(codes.values())
    # a new warehouse's first ingest has nothing to compare with: bronze and file_state get one append each
    for spec in (BRONZE, FILE_STATE):
        history = DeltaTable.forPath(spark, wh.path(spec)).history().orderBy("version").collect()
        assert [r["operation"] for r in history] == ["CREATE TABLE", "WRITE"], spec.qualified
        assert history[1]["operationParameters"]["mode"] == "Append", spec.qualified
    # header facts of files that probe fine
    assert got["one_sample.wav"]["duration_s"] == pytest.approx(1 / 16000)
    assert got["nan_float.wav"]["codec"] == "float" and got["nan_float.wav"]["bit_depth"] == 32
    assert got["a/b/c/deep.flac"]["container"] == "flac"
    assert got["dir with space/héllo wörld 日本.wav"]["duration_s"] == pytest.approx(0.7)
    # content identity: identical bytes, identical audio_id; the id is the sha256 of the bytes
    assert got["twin_1.wav"]["audio_id"] == got["twin_2.wav"]["audio_id"]
    import hashlib

    assert got["twin_1.wav"]["audio_id"] == hashlib.sha256((src / "twin_1.wav").read_bytes()).hexdigest()
    # every failure is in quarantine with its reason, and nothing else is
    q = {rel(uri, src): r for uri, r in quarantine(spark, wh).items()}
    assert set(q) == {n for n, c in expected.items() if c}
    for name, row in q.items():
        assert row["stage"] == "ingest" and row["error_code"] == expected[name] and row["reason"]


def test_rerun_changes_nothing_and_a_changed_file_updates_its_row(spark, tmp_path, make_config, warehouse_for):
    src = tmp_path / "inputs"
    make_bad_inputs(src)
    config = make_config(sources=[src])
    wh = warehouse_for(config)
    ingest(spark, wh, config)
    before = bronze(spark, wh)
    versions = (wh.table_version(BRONZE), wh.table_version(FILE_STATE))

    again = ingest(spark, wh, config)

    assert again.new_or_changed == 0
    assert (wh.table_version(BRONZE), wh.table_version(FILE_STATE)) == versions, "no new Delta commit"
    assert bronze(spark, wh) == before

    # fix the empty file: it gets a probe, a new audio_id, and leaves quarantine
    write_wav(src / "empty.wav", tone(seconds=0.3))
    os.utime(src / "empty.wav", (time.time() + 5, time.time() + 5))
    changed = ingest(spark, wh, config)
    assert (changed.new_or_changed, changed.probed_ok, changed.quarantined) == (1, 1, 0)
    assert DeltaTable.forPath(spark, wh.path(BRONZE)).history(1).first()["operation"] == "MERGE"
    after = bronze(spark, wh)
    fixed = next(r for u, r in after.items() if u.endswith("/empty.wav"))
    assert fixed["error_code"] is None and fixed["duration_s"] == pytest.approx(0.3)
    assert len(after) == len(before)
    assert not any(u.endswith("/empty.wav") for u in quarantine(spark, wh))
    runs = spark.read.format("delta").load(f"{wh.root}/ops/runs").count()
    assert runs == 3


def test_samples_with_manifest(spark, make_config, warehouse_for):
    config = make_config(sources=[REPO / "samples" / "audio"], manifests=[REPO / "samples" / "manifest.jsonl"])
    wh = warehouse_for(config)
    ingest(spark, wh, config)
    rows = bronze(spark, wh)
    assert len(rows) == len(list((REPO / "samples" / "audio").rglob("*.*")))
    by_name = {u.rsplit("/", 1)[1]: r for u, r in rows.items()}
    assert by_name["de_bahnhof.flac"]["language_hint"] == "de"
    assert by_name["de_bahnhof.flac"]["reference_text"].startswith("Der Zug nach Berlin")
    assert by_name["de_bahnhof.flac"]["source"].endswith("manifest.jsonl"), "manifest row wins over folder listing"
    assert by_name["pink_noise.wav"]["reference_text"] is None
    assert by_name["corrupt_cut.wav"]["error_code"] == "TRUNCATED"
    assert by_name["notes_not_audio.mp3"]["error_code"] == "UNKNOWN_FORMAT"
    assert by_name["es_ciudad.mp3"]["codec"] and by_name["fr_marche.ogg"]["container"] == "ogg"


def test_manifest_keeps_unknown_keys_and_records_missing_files_and_bad_lines(
    spark, tmp_path, make_config, warehouse_for
):
    audio = write_wav(tmp_path / "clips" / "a.wav", tone(seconds=0.4))
    lines = [
        {"path": "clips/a.wav", "text": "hello", "language": "en", "speaker": "s1", "split": "train",
         "meta": {"age": 31}},
        {"path": str(tmp_path / "clips" / "missing.wav"), "text": "gone"},
        "this line is not json",
        {"text": "no path here"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n")
    config = make_config(manifests=[manifest])
    wh = warehouse_for(config)
    ingest(spark, wh, config)
    rows = bronze(spark, wh)
    assert len(rows) == 4
    a = rows["file:" + str(audio)]
    assert a["speaker"] == "s1" and a["reference_text"] == "hello"
    assert a["extra"] == {"split": "train", "meta": '{"age":31}'}
    missing = rows["file:" + str(tmp_path / "clips" / "missing.wav")]
    assert missing["error_code"] == "NOT_FOUND"
    bad = sorted(u for u, r in rows.items() if r["error_code"] == "BAD_MANIFEST_ENTRY")
    assert bad == [f"file:{manifest}#line=3", f"file:{manifest}#line=4"]
    assert len(quarantine(spark, wh)) == 3
    # idempotent for manifests too
    v = wh.table_version(BRONZE)
    assert ingest(spark, wh, config).new_or_changed == 0
    assert wh.table_version(BRONZE) == v


def test_audio_table_with_bytes_column(spark, tmp_path, make_config, warehouse_for):
    """A Hugging Face-style table: an `audio` struct of {bytes, path}, plus text."""
    import io

    import soundfile as sf

    def wav_bytes(seconds):
        buf = io.BytesIO()
        sf.write(buf, tone(seconds=seconds), 16000, format="WAV", subtype="PCM_16")
        return buf.getvalue()

    rows = [
        {"audio": {"bytes": wav_bytes(0.5), "path": "x/one.wav"}, "text": "one"},
        {"audio": {"bytes": wav_bytes(1.5), "path": "x/two.wav"}, "text": "two"},
        {"audio": {"bytes": b"garbage" * 10, "path": "x/bad.wav"}, "text": "bad"},
    ]
    table = str(tmp_path / "hf_table")
    spark.createDataFrame(rows, "audio struct<bytes:binary,path:string>, text string").write.format(
        "delta"
    ).save(table)
    config = make_config(sources=[table])
    wh = warehouse_for(config)
    ingest(spark, wh, config)
    got = {u.rsplit("#", 1)[1]: r for u, r in bronze(spark, wh).items()}
    assert set(got) == {"x/one.wav", "x/two.wav", "x/bad.wav"}
    assert got["x/two.wav"]["duration_s"] == pytest.approx(1.5)
    assert got["x/one.wav"]["reference_text"] == "one"
    assert got["x/bad.wav"]["error_code"] == "UNKNOWN_FORMAT"


@pytest.mark.slow
def test_corpus_probes_match_the_manifest(spark, corpus_dir, corpus_manifest, corpus_warehouse):
    """The shared session run ingested the corpus folder: every file once, headers as measured."""
    wh = corpus_warehouse["warehouse"]
    rows = {rel(u, corpus_dir): r for u, r in bronze(spark, wh).items() if u.startswith(f"file:{corpus_dir}/")}
    assert set(rows) == {m["path"] for m in corpus_manifest}, "conservation: every corpus audio file, once"
    for m in corpus_manifest:
        r = rows[m["path"]]
        assert r["error_code"] is None, (m["path"], r["error_message"])
        assert r["sample_rate"] == int(m["sample_rate"]) and r["channels"] == int(m["channels"])
        # MP3 durations differ by encoder delay/padding between decoders
        tol = 0.08 if m["path"].endswith(".mp3") else 0.002
        assert r["duration_s"] == pytest.approx(float(m["duration_s"]), abs=tol), m["path"]
        if m["reference_transcript"]:
            assert r["reference_text"] == m["reference_transcript"], "manifest fields reach bronze"


def test_probe_tasks_are_as_large_as_their_bounds_allow(make_config):
    """Small files share few tasks (each task has a fixed cost); bytes and files bound a task; every core
    gets a task while there are files to share."""
    from jobs.config import with_overrides
    from jobs.stages.ingest import _probe_tasks

    cfg = with_overrides(make_config(), {"ingest": {"files_per_task": 5000, "bytes_per_task": 1 << 30}}).ingest
    assert _probe_tasks(10_000, 32 << 20, cfg, cores=2) == 2  # 10,000 small files: one task a core
    assert _probe_tasks(12_000, 32 << 20, cfg, cores=2) == 3  # no task over 5,000 files
    assert _probe_tasks(100, 50 << 30, cfg, cores=2) == 50  # no task over 1 GiB
    assert _probe_tasks(10_000, 32 << 20, cfg, cores=16) == 16  # every core busy...
    assert _probe_tasks(3, 3 << 10, cfg, cores=16) == 3  # ...while there are files to share
    assert _probe_tasks(0, 0, cfg, cores=2) == 1


def test_the_ledger_row_reads_back_as_it_was_recorded(spark, tmp_path, make_config, warehouse_for):
    """ops.runs is written from literals (no Python worker): maps, empty maps, nulls and times survive."""
    from datetime import UTC, datetime

    wh = warehouse_for(make_config(warehouse=tmp_path / "wh"))
    record = RunRecord(job="ingest", config_hash="c0ffee")
    record.status, record.audio_seconds, record.rows_in = "failed", 12.5, 7
    record.stage_seconds = {"ingest": 1.25, "annotate.asr": 3.0}
    record.delta_versions = {"bronze.audio_files": 4}
    record.finished_at = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
    write_run(wh, record)
    rows = spark.read.format("delta").load(wh.path(RUNS)).collect()
    assert len(rows) == 1
    got, want = rows[0].asDict(), record.as_row()
    for key in ("started_at", "finished_at"):  # Spark returns session-local naive times
        assert got.pop(key).astimezone(UTC) == want.pop(key)
    assert got == want
    assert got["errors_by_code"] == {} and got["validation_success"] is None and got["message"] is None


@pytest.mark.slow
def test_an_unchanged_listing_skips_the_plan_and_every_change_is_seen(spark, tmp_path, make_config, warehouse_for):
    """A rerun whose listing is the one bronze was brought in line with stops before the plan
    (the stage's inputs are as recorded); a changed, new or deleted file, an edited manifest, another commit
    to bronze or an unreadable record each send the run through the full plan again."""
    from jobs.stages.ingest import state_scope
    from jobs.warehouse.state import StageState

    src = tmp_path / "clips"
    for i in range(4):
        write_wav(src / f"c{i}.wav", tone(freq=300 + 50 * i, seconds=0.3))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"path": "clips/c0.wav", "text": "one"}) + "\n")
    config = make_config(sources=[src], manifests=[manifest])
    wh = warehouse_for(config)

    def rerun(expect_shortcut: bool, new_or_changed: int = 0):
        result = ingest(spark, wh, config)
        assert (result.unchanged_since is not None) == expect_shortcut, result
        assert result.new_or_changed == new_or_changed, result
        assert result.listed == len(list(src.glob("*.wav")))
        return result

    first = ingest(spark, wh, config)
    assert first.new_or_changed == 4 and first.unchanged_since is None
    versions = (wh.table_version(BRONZE), wh.table_version(FILE_STATE))
    assert rerun(True).unchanged_since == versions[0], "right after the commit that took the listing in"
    assert (wh.table_version(BRONZE), wh.table_version(FILE_STATE)) == versions, "the shortcut commits nothing"

    write_wav(src / "c1.wav", tone(freq=999, seconds=0.5))  # new bytes at a listed uri
    os.utime(src / "c1.wav", (time.time() + 5, time.time() + 5))
    rerun(False, new_or_changed=1)
    assert bronze(spark, wh)[f"file:{src}/c1.wav"]["duration_s"] == pytest.approx(0.5)
    rerun(True)

    write_wav(src / "c4.wav", tone(seconds=0.2))  # a new file
    rerun(False, new_or_changed=1)
    rerun(True)

    (src / "c4.wav").unlink()  # a deleted file
    assert rerun(False).deleted == 1
    rerun(True)

    manifest.write_text(json.dumps({"path": "clips/c0.wav", "text": "one, edited"}) + "\n")  # a manifest edit
    rerun(False, new_or_changed=1)
    assert bronze(spark, wh)[f"file:{src}/c0.wav"]["reference_text"] == "one, edited"
    rerun(True)

    other = tmp_path / "other"  # another source's ingest commits to bronze: this listing plans in full once
    write_wav(other / "o.wav", tone(seconds=0.2))
    assert ingest(spark, wh, make_config(sources=[other], warehouse=wh.root)).new_or_changed == 1
    rerun(False)
    rerun(True)

    other_settings = make_config(sources=[src], manifests=[manifest], warehouse=wh.root,
                                 ingest={"max_file_bytes": 1 << 30})
    assert ingest(spark, wh, other_settings).unchanged_since is None, "other ingest settings: a full plan"
    assert ingest(spark, wh, other_settings).unchanged_since is not None
    rerun(False)  # one record per source set: the settings of the last run over it
    rerun(True)

    wh.write_text(StageState(wh, "ingest", state_scope(config)).path, "{not json")  # a record cut short: a full plan, no error
    rerun(False)
    rerun(True)
    assert spark.read.format("delta").load(wh.path(BRONZE)).count() == 6  # c0-c4 (c4 marked deleted) and o
