"""spark-submit to a real local standalone cluster (master + worker from the pyspark package), with two
fake GPUs: same silver table as local mode, GPU annotators (asr, quality) included; each task uses the
GPU address Spark assigned to it, falls back to CPU with a recorded note when CUDA is absent, or fails
with an actionable message when told to."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO

pytestmark = pytest.mark.slow  # a standalone Spark cluster and spark-submit

FAKE_GPU = REPO / "tests" / "fake_gpu_discovery.sh"
SIGNAL = ["levels", "vad", "snr", "pitch"]
NAMES = [*SIGNAL, "quality", "asr"]  # asr and quality are the annotators that can use a GPU


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from bench.standalone import StandaloneCluster

    with StandaloneCluster(tmp_path_factory.mktemp("cluster"), cores=2, memory="4g",
                           worker_opts=f"-Dspark.worker.resource.gpu.amount=2 "
                                       f"-Dspark.worker.resource.gpu.discoveryScript={FAKE_GPU}") as standalone:
        yield standalone


def submit(cluster, job: str, *args: str, extra_conf: dict | None = None):
    conf = {"spark.executor.resource.gpu.amount": "2", "spark.task.resource.gpu.amount": "1",
            "spark.executor.resource.gpu.discoveryScript": str(FAKE_GPU), "spark.executor.cores": "2",
            "spark.executor.memory": "3g", **(extra_conf or {})}
    return subprocess.run(cluster.submit_command(job, *args, conf=conf), env=cluster.env, capture_output=True,
                          text=True, timeout=900, cwd=REPO)


def write_config(path: Path, **annotate) -> Path:
    path.write_text(yaml.safe_dump({"annotate": {"annotators": NAMES, "files_per_batch": 2, **annotate}}))
    return path


def silver_rows(spark, warehouse: Path) -> dict:
    df = spark.read.format("delta").load(str(warehouse / "silver" / "annotations"))
    out = {}
    for r in df.collect():
        d = r.asDict(recursive=True)
        out[d["audio_id"]] = d
    return out


@pytest.fixture(scope="module")
def cluster_run(spark, cluster, tmp_path_factory):
    """Ingest the samples (locally), then `spark-submit jobs/annotate.py` to the cluster."""
    from jobs.config import load_config
    from jobs.stages.ingest import run_ingest
    from jobs.warehouse.ledger import RunRecord
    from jobs.warehouse.store import Warehouse

    root = tmp_path_factory.mktemp("cluster_run")
    src = REPO / "samples" / "audio"
    wh = root / "wh_cluster"
    config = load_config(overrides={"warehouse": str(wh)}, sources=[str(src)])
    warehouse = Warehouse(spark, config.warehouse)
    warehouse.attach()
    run_ingest(spark, config, warehouse, RunRecord(job="ingest", config_hash=config.hash()))
    cfg = write_config(root / "cfg.yaml")
    res = submit(cluster, "annotate", "--warehouse", str(wh), "--config", str(cfg))
    assert res.returncode == 0, res.stderr[-4000:]
    return {"warehouse": wh, "src": src, "root": root}


def test_spark_submit_to_a_standalone_cluster_matches_local_mode(spark, cluster_run, make_config, warehouse_for):
    from jobs.stages.annotate import run_annotate
    from jobs.stages.ingest import run_ingest
    from jobs.warehouse.ledger import RunRecord

    # local mode runs the signal annotators only: their results must match the cluster's exactly
    config = make_config(sources=[cluster_run["src"]], annotate={"annotators": SIGNAL, "files_per_batch": 2})
    wh_local = warehouse_for(config)
    for fn, job in ((run_ingest, "ingest"), (run_annotate, "annotate")):
        fn(spark, config, wh_local, RunRecord(job=job, config_hash=config.hash()))

    on_cluster = silver_rows(spark, cluster_run["warehouse"])
    local = silver_rows(spark, Path(wh_local.root))
    assert set(on_cluster) == set(local) and len(local) == 9
    assert sum(r["asr"]["status"] == "ok" for r in on_cluster.values()) >= 5  # the speech samples
    addresses = set()
    for audio_id, row in on_cluster.items():
        for name in ("decode", *SIGNAL):
            assert json.dumps(row[name], sort_keys=True) == json.dumps(local[audio_id][name], sort_keys=True), name
        by = row["annotated_by"]
        assert by["gpu_address"] in ("0", "1"), by  # an address Spark assigned to the task
        assert by["device"] == "cpu" and f"address {by['gpu_address']} " in by["device_note"], by
        assert "fell back to CPU" in by["device_note"], by
        for name in ("asr", "quality"):  # the GPU annotators ran, on the device the task fell back to
            assert row[name]["status"] in ("ok", "skipped", "failed") and row[name]["version"], name
        if row["asr"]["status"] == "ok":
            assert row["asr"]["device"] == "cpu" and row["asr"]["text"]
        if row["quality"]["error_code"] == "GATED":  # the cascade ruled the file out: asr was gated with it
            assert row["asr"]["error_code"] == "GATED"
            assert row["asr"]["error_message"] == row["quality"]["error_message"]
        elif row["decode"]["status"] == "ok" and row["decode"]["duration_s"] >= 1.0:
            assert row["quality"]["status"] == "ok" and 1.0 <= row["quality"]["ovrl"] <= 5.0
        addresses.add(by["gpu_address"])
        assert local[audio_id]["annotated_by"]["gpu_address"] is None
    # two tasks ran at once on the two-core executor, each holding one of the two GPUs
    assert addresses == {"0", "1"}


def test_gpu_fallback_fail_stops_with_an_actionable_message(cluster, cluster_run):
    # new work for the same warehouse (one changed param), on a cluster that must not fall back
    cfg = write_config(cluster_run["root"] / "fail.yaml", gpu_fallback="fail",
                       params={"levels": {"clip_threshold": 0.99}})
    res = submit(cluster, "annotate", "--warehouse", str(cluster_run["warehouse"]), "--config", str(cfg),
                 extra_conf={"spark.task.maxFailures": "1"})
    assert res.returncode == 3, res.stderr[-3000:]
    assert "CUDA sees 0 device(s)" in res.stderr and "gpu_fallback: cpu" in res.stderr
