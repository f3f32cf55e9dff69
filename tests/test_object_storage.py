"""Sources, manifests and the warehouse on S3-compatible object storage, against a real server.

A moto server (tests/s3_server.py) runs on 127.0.0.1 with authentication on; Spark reaches it through
Hadoop's S3A connector and the executors through pyarrow, both configured only by the `spark.hadoop.fs.s3a.*`
entries of one config file. Four corpus files, with the corpus manifest's fields, go through `voxlake run`
from a bucket into an s3a warehouse; their gold rows must equal the ones the shared corpus run
(conftest.corpus_warehouse) published from the local folder, apart from the URIs. One expensive setup,
many assertions.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import s3_server
import yaml
from conftest import CORPUS, REPO
from pyspark.sql import functions as F

from schemas.gold import UTTERANCES
from udfs.storage import StorageConfigError, StorageSettings, check_supported, split_bucket

pytestmark = pytest.mark.slow  # an S3 server, the S3A connector and voxlake runs in subprocesses

FILES = ["speech/en/LJ001-0002.wav", "speech/en/LJ001-0029.mp3", "speech/multilingual/picovoice_test_de.wav",
         "nonspeech/robin-bird-whistling.hq.ogg"]
LATE = "speech/en/LJ002-0020.wav"  # ingested, then deleted before annotate
# link's group ids name a group by its smallest audio_id in that archive: another archive, other names
VOLATILE = {"uri", "uris", "annotated_at", "published_at", "publish_run_id", "speaker_cluster_id",
            "duplicate_group_id"}


def voxlake(*args, check=True, timeout=900):
    proc = subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode not in (0, 1):
        raise AssertionError(f"voxlake {args[0]} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return proc


def sql_rows(config, warehouse, query):
    out = voxlake("sql", "--config", str(config), "--warehouse", warehouse, "--format", "json", query)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def write_config(path, conf: dict) -> str:
    docs = path.parent / "quality"  # GX's local project for the s3a warehouse (quality.docs_dir)
    path.write_text(yaml.safe_dump({"spark": {"conf": conf}, "quality": {"docs_dir": str(docs)}}))
    return str(path)


def write_manifest(path, names, corpus_manifest) -> None:
    """The fields conftest.corpus_warehouse gives these files, with paths relative to the manifest."""
    by_path = {m["path"]: m for m in corpus_manifest}
    with open(path, "w", encoding="utf-8") as f:
        for name in names:
            m = by_path[name]
            entry = {"path": name, "kind": m["kind"]}
            if m["reference_transcript"]:
                entry["text"] = m["reference_transcript"]
            if m["language"]:
                entry["language"] = m["language"]
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    if not (REPO / ".deps" / "s3a-jars" / ".ready").exists():
        pytest.fail("the S3A connector is missing: run `make setup-s3` (make test does)")
    root = tmp_path_factory.mktemp("s3")
    server = s3_server.start(buckets=("audio", "lake"), log_path=root / "moto.log")
    yield server, root
    server.stop()


@pytest.fixture(scope="module")
def runs(s3, spark, corpus_manifest):
    """`voxlake run` from a bucket into an s3a warehouse; then an object deleted between ingest and annotate
    (those three stages run in the tests' own session, which reaches the server through the same settings)."""
    from jobs.commandline.runner import execute
    from jobs.config import load_config
    from jobs.warehouse.store import Warehouse

    server, root = s3
    staged = root / "upload"
    for name in FILES:
        (staged / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CORPUS / name, staged / name)
    write_manifest(staged / "manifest.jsonl", FILES, corpus_manifest)
    server.upload_tree("audio", "raw", staged)  # the audio and the manifest (relative paths)
    config = write_config(root / "s3.yaml", server.spark_conf())
    s3_wh = "s3a://lake/voxlake"
    s3_run = voxlake("run", "--config", config, "--source", "s3a://audio/raw",
                     "--manifest", "s3a://audio/raw/manifest.jsonl", "--warehouse", s3_wh)
    print(f"s3 run:\n{s3_run.stdout}")

    use_server(spark, server)
    server.client().upload_file(str(CORPUS / LATE), "audio", f"late/{LATE}")
    docs = {"quality": {"docs_dir": str(root / "quality")}}
    wh = Warehouse(spark, s3_wh)
    stages = {"ingest": execute(spark, load_config(overrides={"warehouse": s3_wh, **docs},
                                                   sources=["s3a://audio/late"]), wh, "ingest")}
    server.client().delete_object(Bucket="audio", Key=f"late/{LATE}")
    for job in ("annotate", "publish"):
        stages[job] = execute(spark, load_config(overrides={"warehouse": s3_wh, **docs}), wh, job)
    return {"server": server, "root": root, "config": config, "s3_wh": s3_wh, "s3_run": s3_run,
            "late_uri": f"s3a://audio/late/{LATE}", "stages": stages}


def _gold(rows):  # `voxlake sql` writes nulls, Spark's toJSON leaves them out: compare without them
    return {r["audio_id"]: {k: v for k, v in r.items() if k not in VOLATILE and v is not None} for r in rows}


def use_server(spark, server) -> None:
    """Point the tests' session at the server (the S3A jars are on its classpath after make setup-s3)."""
    from jobs.spark.internals import hadoop_conf

    hconf = hadoop_conf(spark)
    for key, value in server.spark_conf().items():
        hconf.set(key[len("spark.hadoop."):], value)


def s3_table(spark, runs, table: str) -> list[dict]:
    """Rows of a Delta table of the s3a warehouse, read by the tests' own session through S3A."""
    use_server(spark, runs["server"])
    df = spark.read.format("delta").load(f"{runs['s3_wh']}/{table}")
    return [r.asDict(recursive=True) for r in df.collect()]


def test_object_storage_run_matches_the_local_run(runs, spark, corpus_warehouse):
    assert runs["s3_run"].returncode == 0, runs["s3_run"].stderr[-3000:]
    remote_rows = sql_rows(runs["config"], runs["s3_wh"], "SELECT * FROM gold.utterances")
    remote = _gold(remote_rows)
    local_uris = [f"file:{CORPUS / name}" for name in FILES]
    local_gold = spark.read.format("delta").load(corpus_warehouse["warehouse"].path(UTTERANCES)).where(
        F.arrays_overlap("uris", F.array(*[F.lit(u) for u in local_uris])))
    local = _gold([json.loads(j) for j in local_gold.toJSON().collect()])
    assert local, "the local run published none of these files: the comparison would be empty"
    assert remote.keys() == local.keys()
    for audio_id, row in local.items():
        assert remote[audio_id] == row, audio_id
    assert all(u.startswith("s3a://audio/raw/") for r in remote_rows for u in r["uris"])

    # every listed file ends in exactly one place, in both warehouses
    state = [r for r in s3_table(spark, runs, "ops/file_state") if r["uri"].startswith("s3a://audio/raw/")]
    assert len(state) == len(FILES) and {r["status"] for r in state} <= {"curated", "quarantined"}
    assert sum(r["status"] == "curated" for r in state) == len(local)


def test_object_deleted_before_annotate_is_that_files_failure(runs, spark):
    stages = runs["stages"]
    assert stages["ingest"].results["ingest"].probed_ok == 1
    errors = stages["annotate"].results["annotate"].errors_by_code  # "annotator:CODE" -> files
    assert errors and {key.split(":")[1] for key in errors} == {"NOT_FOUND"} and set(errors.values()) == {1}, errors
    state = s3_table(spark, runs, "ops/file_state")
    rows = [r for r in state if r["uri"] == runs["late_uri"]]
    assert len(rows) == 1, rows
    assert rows[0]["status"] == "quarantined" and rows[0]["error_code"] == "NOT_FOUND", rows[0]
    # the files of the first run are untouched by it
    gold = s3_table(spark, runs, "gold/utterances")
    assert len(gold) == sum(r["status"] == "curated" for r in state) > 0


def test_runs_ledger_and_views_on_object_storage(runs, spark):
    jobs = sorted(s3_table(spark, runs, "ops/runs"), key=lambda r: r["started_at"])
    assert [r["job"] for r in jobs] == ["run", "ingest", "annotate", "publish"]
    assert all(r["status"] in ("succeeded", "blocked") for r in jobs), jobs
    from jobs.warehouse.store import Warehouse

    found = Warehouse(spark, runs["s3_wh"]).attach_existing()  # what `voxlake sql` does, in this session
    assert {"gold.utterances", "ops.file_state", "ops.runs"} <= set(found)
    summary = {r["error_code"]: r["files"] for r in spark.sql("SELECT * FROM ops.quarantine_summary").collect()}
    assert summary.get("NOT_FOUND") == 1, summary
    docs = list((runs["root"] / "quality").rglob("index.html"))
    assert docs, "no Data Docs in quality.docs_dir for the s3a warehouse"


@pytest.mark.parametrize("what", ["credentials", "endpoint"])
def test_wrong_settings_fail_early_naming_the_setting(s3, what):
    server, root = s3
    conf = server.spark_conf(secret_key="not-the-secret") if what == "credentials" else \
        {**server.spark_conf(), "spark.hadoop.fs.s3a.endpoint": f"http://127.0.0.1:{s3_server.free_port()}"}
    config = write_config(root / f"bad-{what}.yaml", conf)
    proc = voxlake("run", "--config", config, "--source", "s3a://audio/raw", "--warehouse", "s3a://lake/other",
                   check=False, timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]
    message = proc.stderr.strip().splitlines()[-1]
    setting = "fs.s3a.access.key" if what == "credentials" else "fs.s3a.endpoint"
    assert message.startswith("voxlake: error:") and setting in message, message


def test_settings_map_to_the_python_reader():
    settings = StorageSettings.from_properties({
        "fs.s3a.endpoint": "minio.local:9000", "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false", "fs.s3a.access.key": "AK", "fs.s3a.secret.key": "SK",
        "fs.s3a.connection.timeout": "200s", "fs.s3a.connection.establish.timeout": "5000",
        "fs.s3a.bucket.other.endpoint": "https://s3.eu-west-1.amazonaws.com", "fs.s3a.endpoint.region": "eu-west-1",
    })
    opts = settings.s3_options("data")
    assert opts["endpoint_override"] == "http://minio.local:9000" and opts["force_virtual_addressing"] is False
    assert (opts["access_key"], opts["secret_key"]) == ("AK", "SK")
    assert opts["request_timeout"] == 200.0 and opts["connect_timeout"] == 5.0
    other = settings.s3_options("other")  # a per-bucket endpoint on AWS itself: no override, region kept
    assert "endpoint_override" not in other and other["region"] == "eu-west-1"
    assert "SK" not in repr(settings)
    assert split_bucket("s3a://b/key?with#odd/chars.wav") == ("b", "key?with#odd/chars.wav")
    with pytest.raises(StorageConfigError, match="not supported yet"):
        check_supported("gs://bucket/audio")
