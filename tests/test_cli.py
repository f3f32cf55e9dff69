"""The `voxlake` command line as users run it: separate processes sharing a warehouse folder."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

VOXLAKE = [sys.executable, "-m", "jobs.cli"]


def run(*args, check=True):
    proc = subprocess.run([*VOXLAKE, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:{proc.stdout}\nstderr:{proc.stderr[-3000:]}")
    return proc


def test_ingest_then_sql_in_another_process(tmp_path):
    wh = tmp_path / "wh"
    out = run("ingest", "--source", "samples/audio", "--manifest", "samples/manifest.jsonl", "--warehouse", str(wh))
    assert "quarantined" in out.stdout and "INFO" not in out.stdout, "summary on stdout, logs on stderr"

    res = run("sql", "--warehouse", str(wh), "--format", "json",
              "SELECT uri, language_hint, error_code FROM bronze.audio_files ORDER BY uri")
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(rows) == 11
    assert {r["error_code"] for r in rows} == {None, "TRUNCATED", "UNKNOWN_FORMAT"}
    assert sum(1 for r in rows if r["language_hint"]) == 6

    csv_out = run("sql", "--warehouse", str(wh), "--format", "csv",
                  "SELECT job, status, rows_in FROM ops.runs").stdout.splitlines()
    assert csv_out[0] == "job,status,rows_in" and csv_out[1] == "ingest,succeeded,11"

    bad_sql = run("sql", "--warehouse", str(wh), "SELECT nope FROM bronze.audio_files", check=False)
    assert bad_sql.returncode == 2 and "SQL error" in bad_sql.stderr


def test_usage_errors_exit_2(tmp_path):
    no_source = run("ingest", "--warehouse", str(tmp_path / "wh"), check=False)
    assert no_source.returncode == 2 and "nothing to ingest" in no_source.stderr
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("warehouse: [unclosed\n")
    res = run("ingest", "--source", "samples/audio", "--config", str(bad_config), check=False)
    assert res.returncode == 2 and "not valid YAML" in res.stderr
    assert run("frobnicate", check=False).returncode == 2
