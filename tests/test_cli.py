"""The `voxlake` command line as users run it: separate processes sharing a warehouse folder."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

VOXLAKE = [sys.executable, "-m", "jobs.cli"]


def run(*args, check=True, env=None):
    proc = subprocess.run([*VOXLAKE, *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr[-3000:]}")
    return proc


@pytest.mark.slow
def test_ingest_then_sql_in_another_process(tmp_path):
    wh = tmp_path / "wh"
    class_log = tmp_path / "classes.log"  # the driver JVM says where each class came from
    out = run("ingest", "--source", "samples/audio", "--manifest", "samples/manifest.jsonl", "--warehouse", str(wh),
              env={"SPARK_SUBMIT_OPTS": f"-Xlog:class+load=info:file={class_log}"})
    assert "quarantined" in out.stdout and "INFO" not in out.stdout, "summary on stdout, logs on stderr"
    # `make setup` made the class archive: Spark's and Delta's classes come from it, not from their jars
    sources = {}
    for line in class_log.read_text().splitlines():
        name, _, source = line.partition("] ")[2].partition(" source: ")
        sources[name] = source
    for name in ("org.apache.spark.SparkContext", "io.delta.sql.DeltaSparkSessionExtension"):
        assert sources[name] == "shared objects file (top)", (name, sources.get(name))
    assert "Unable to use shared archive" not in out.stderr

    res = run("sql", "--warehouse", str(wh), "--format", "json",
              "SELECT uri, language_hint, error_code FROM bronze.audio_files ORDER BY uri")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 11
    assert {r["error_code"] for r in rows} == {None, "TRUNCATED", "UNKNOWN_FORMAT"}
    assert sum(1 for r in rows if r["language_hint"]) == 6

    csv_out = run("sql", "--warehouse", str(wh), "--format", "csv",
                  "SELECT job, status, rows_in FROM ops.runs").stdout.splitlines()
    assert csv_out[0] == "job,status,rows_in" and csv_out[1] == "ingest,succeeded,11"

    # a misspelt column: one line with Spark's error class and its suggestion, no JSON trace before it
    bad_sql = run("sql", "--warehouse", str(wh), "SELECT nope FROM bronze.audio_files", check=False)
    assert bad_sql.returncode == 2 and "SQL error" in bad_sql.stderr
    said = [line for line in bad_sql.stderr.splitlines() if "jdk.incubator.vector" not in line and " INFO " not in line]
    assert len(said) == 1 and "UNRESOLVED_COLUMN" in said[0] and "Did you mean" in said[0], bad_sql.stderr[-3000:]

    # a folder that holds no warehouse: one line and exit 2, whatever the query or the reading command
    empty = tmp_path / "not_a_warehouse"
    empty.mkdir()
    for args in (("sql", "SELECT * FROM ops.quarantine"), ("sql", "SELECT 1"), ("report",), ("publish",)):
        res = run(*args[:1], "--warehouse", str(empty), *args[1:], check=False)
        said = [line for line in res.stderr.splitlines() if "jdk.incubator.vector" not in line]
        assert res.returncode == 2 and len(said) == 1 and "holds no voxlake warehouse" in said[0], \
            (args, res.stderr[-2000:])


def test_usage_errors_exit_2(tmp_path):
    no_source = run("ingest", "--warehouse", str(tmp_path / "wh"), check=False)
    assert no_source.returncode == 2 and "nothing to ingest" in no_source.stderr
    assert not (tmp_path / "wh").exists(), "a usage error is found before Spark starts or a table is made"
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("warehouse: [unclosed\n")
    res = run("ingest", "--source", "samples/audio", "--config", str(bad_config), check=False)
    assert res.returncode == 2 and "not valid YAML" in res.stderr
    assert run("frobnicate", check=False).returncode == 2


def test_config_mistakes_exit_2_naming_the_key_and_the_closest_one(tmp_path):
    """A misspelt or unknown key, or a value of the wrong type, stops the command before Spark starts."""
    cases = {
        "anotate:\n  annotators: [levels]\n": "unknown config key 'anotate'; did you mean 'annotate'?",
        "annotate:\n  commit_every: 60\n": "unknown config key 'annotate.commit_every'; did you mean "
                                           "'annotate.commit_every_s'?",
        "ingest:\n  files_per_task: many\n": "config key 'ingest.files_per_task' must be integer, not str",
        "publish:\n  recipe:\n    snr_db_mni: 3\n": "did you mean 'publish.recipe.snr_db_min'?",
        "run:\n  dead_after_s: 0\n": "run.dead_after_s (0) must be larger than run.heartbeat_s (30)",
    }
    for i, (text, expected) in enumerate(cases.items()):
        cfg = tmp_path / f"c{i}.yaml"
        cfg.write_text(text)
        res = run("run", "--source", "samples/audio", "--warehouse", str(tmp_path / "wh"), "--config", str(cfg),
                  check=False)
        assert res.returncode == 2 and expected in res.stderr, (text, res.stderr[-2000:])
        assert "Traceback" not in res.stderr
    assert not (tmp_path / "wh").exists(), "a rejected config must not create a warehouse"
    # what the shipped defaults and the README's examples hold is valid (free-form maps stay free)
    from jobs.config import load_config

    ok = load_config(overrides={"warehouse": "unused", "spark": {"conf": {"spark.hadoop.fs.s3a.endpoint": "x"}},
                                "annotate": {"params": {"asr": {"model": "tiny.en"}}, "plugins": {}},
                                "publish": {"critical": {"mean_dnsmos_min": None, "mean_dnsmos_max": None}}})
    assert ok.annotate.params["asr"]["model"] == "tiny.en"


def test_progress_line_is_drawn_on_a_terminal_and_cleared(spark):
    """A long Spark step redraws one line (tasks done/total, elapsed) on a TTY, then erases it."""
    import io
    import time

    from jobs.spark.progress import StageProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    screen = Terminal()
    with StageProgress(spark, "annotate chunk 1/1", log_every_s=60, stream=screen):
        spark.sparkContext.parallelize(range(4), 4).map(lambda x: time.sleep(1.5) or x).collect()
    drawn = screen.getvalue().split("\r")
    assert any(line.startswith("annotate chunk 1/1: tasks ") and "/4 done" in line for line in drawn), drawn
    assert drawn[-1] == "" and drawn[-2].strip() == "", "the line is erased when the step ends"


def test_class_archive_is_tied_to_the_class_path(tmp_path):
    """An archive made for other jars is never used: its name changes with any jar on the class path."""
    from jobs.spark.class_archive import archive_path
    from jobs.spark.session import local_delta_jars

    jars = local_delta_jars()
    extra = tmp_path / "extra.jar"
    extra.write_bytes(b"PK")
    assert archive_path(jars) == archive_path(list(jars))
    assert archive_path([*jars, str(extra)]) != archive_path(jars)
    before = archive_path([*jars, str(extra)])
    extra.write_bytes(b"PK\x03")  # the same jar, rebuilt
    assert archive_path([*jars, str(extra)]) != before
