"""Two voxlake runs on one warehouse at once (an overrun nightly job meets the next): the lease.

Real processes, started together on a new warehouse (the case where both would create the tables): one
goes ahead, the other waits for it (run.lease_wait_s) or, told not to wait, exits 4 with one line.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO

FAST = {  # levels only, with a gate that accepts what levels alone can tell (the test is about the lease)
    "annotate": {"annotators": ["levels"]},
    "publish": {"recipe": {"optional_annotators": ["vad", "snr", "bandwidth", "quality", "asr", "text", "events"]},
                "critical": {"max_rejected_share": 1.0, "min_non_null_share": 0.0, "mean_dnsmos_min": None,
                             "mean_dnsmos_max": None, "median_snr_min": None, "median_snr_max": None}},
}


def start(config, warehouse):
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "run", "--config", str(config), "--warehouse", str(warehouse),
         "--source", "samples/audio", "--manifest", "samples/manifest.jsonl"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def holds_lease(wh) -> bool:
    for path in (wh / "_staging" / "_runs").glob("*.json"):
        try:
            if json.loads(path.read_text()).get("holding"):
                return True
        except (OSError, ValueError):  # gone, or being rewritten
            pass
    return False


@pytest.mark.slow  # voxlake runs in subprocesses, side by side
def test_concurrent_runs_take_turns_and_a_busy_warehouse_is_one_line(spark, tmp_path):
    waiting = tmp_path / "wait.yaml"
    waiting.write_text(yaml.safe_dump({**FAST, "run": {"lease_wait_s": 600}}))
    wh = tmp_path / "wh"
    first, second = start(waiting, wh), start(waiting, wh)
    results = [finish(first), finish(second)]
    assert [r[0] for r in results] == [0, 0], [r[2][-2000:] for r in results]
    waited = [r for r in results if "waiting for run" in r[2]]
    assert len(waited) == 1, "exactly one of the two waited for the other"
    assert "new or changed    0" in waited[0][1], "the run that waited found the work done"

    state = spark.read.format("delta").load(str(wh / "ops" / "file_state"))
    assert state.count() == state.select("uri").distinct().count() == 11  # every sample once
    gold = spark.read.format("delta").load(str(wh / "gold" / "utterances"))
    assert gold.count() == gold.select("audio_id").distinct().count()
    runs = spark.read.format("delta").load(str(wh / "ops" / "runs")).collect()
    assert sorted(r["status"] for r in runs) == ["succeeded", "succeeded"]

    # a run that holds the warehouse, and one told not to wait: exit 4, one line, nothing written
    holder = start(waiting, wh)
    deadline = time.time() + 120
    while not holds_lease(wh):
        assert time.time() < deadline and holder.poll() is None, "the first run never took the lease"
        time.sleep(0.2)
    eager = tmp_path / "eager.yaml"
    eager.write_text(yaml.safe_dump({**FAST, "run": {"lease_wait_s": 0}}))
    code, out, err = finish(start(eager, wh))
    assert code == 4, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("voxlake: warehouse busy: run ") and "did nothing" in last, last
    assert "Traceback" not in err
    assert finish(holder)[0] == 0
    runs = spark.read.format("delta").load(str(wh / "ops" / "runs")).count()
    assert runs == 3, "the busy run must not be recorded as a run"


def test_a_claim_caught_mid_rewrite_still_holds_the_warehouse(spark, tmp_path):
    """A claim is rewritten in place; a reader that lands between truncate and write sees an empty file.

    Skipping such a file let both of two simultaneous runs go ahead (both then created the tables of a new
    warehouse and one failed): an unreadable live claim must count as held, a vanished one as ended.
    """
    from jobs.config import load_config
    from jobs.warehouse.lease import Heartbeat, WarehouseBusy
    from jobs.warehouse.ledger import RunRecord
    from jobs.warehouse.store import Warehouse

    wh = Warehouse(spark, str(tmp_path / "wh"))
    runs = tmp_path / "wh" / "_staging" / "_runs"
    runs.mkdir(parents=True)
    (runs / "run-other.json").write_text("")  # the other run's claim, mid-rewrite
    run = load_config(overrides={"warehouse": wh.root}).run  # the shipped lease settings (no waiting)
    lease = {"heartbeat_s": run.heartbeat_s, "dead_after_s": run.dead_after_s, "lease_wait_s": run.lease_wait_s}
    with pytest.raises(WarehouseBusy, match="run run-other"):
        with Heartbeat(wh, RunRecord(job="ingest", config_hash="x"), **lease):
            pass
    assert [p.name for p in runs.iterdir() if p.suffix == ".json"] == ["run-other.json"], \
        "the busy run removed its own claim"

    (runs / "run-other.json").unlink()  # that run ended: nothing holds the warehouse
    with Heartbeat(wh, RunRecord(job="ingest", config_hash="x"), **lease) as beat:
        assert json.loads((runs / f"{beat.record.run_id}.json").read_text())["holding"]
