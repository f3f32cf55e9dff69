"""`voxlake export`: every format loaded by its own consumer library and compared with gold at the version
it pins; the same version exports the same bytes; an earlier version exports the earlier set."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import LEAN_ANNOTATE, LEAN_RECIPE, REPO

from jobs.commands.export import ExportRequest, run_export
from jobs.warehouse.catalog import SEGMENTS, UTTERANCES

pytestmark = pytest.mark.slow  # a pipeline run with real models

SAMPLES = REPO / "samples"
FIRST = ["audio/speech/en_weather.wav", "audio/speech/en_library.flac"]
LATER = ["audio/speech/es_ciudad.mp3"]


@pytest.fixture(scope="module")
def exported(spark, tmp_path_factory):
    """Two runs (the second adds a file), then every format at the current and the first gold version."""
    from jobs.commandline.runner import execute
    from jobs.config import load_config
    from jobs.warehouse.store import Warehouse

    root = tmp_path_factory.mktemp("export")
    src = root / "src"
    manifest = [json.loads(line) for line in (SAMPLES / "manifest.jsonl").read_text().splitlines()]

    def add(names):
        for name in names:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SAMPLES / name, src / name)
        with open(src / "manifest.jsonl", "w") as f:
            for m in manifest:
                if (src / m["path"]).exists():
                    f.write(json.dumps(m) + "\n")

    wh = Warehouse(spark, str(root / "wh"))
    add(FIRST)
    config = load_config(overrides={"warehouse": str(root / "wh"), "annotate": LEAN_ANNOTATE,
                                    "publish": {"recipe": LEAN_RECIPE}}, sources=[str(src / "audio")],
                         manifests=[str(src / "manifest.jsonl")])
    execute(spark, config, wh, "run")
    from delta.tables import DeltaTable

    first_version = DeltaTable.forPath(spark, wh.path(UTTERANCES)).history(1).first()["version"]
    add(LATER)
    execute(spark, config, wh, "run")
    out = {}
    for fmt in ("nemo", "lhotse", "hf", "webdataset"):
        out[fmt] = run_export(spark, config, wh, ExportRequest(
            format=fmt, out=str(root / fmt), embed_audio=fmt == "hf", unit="files"))
    out["nemo_again"] = run_export(spark, config, wh, ExportRequest(format="nemo", out=str(root / "nemo_again"),
                                                                    unit="files"))
    out["webdataset_again"] = run_export(spark, config, wh, ExportRequest(format="webdataset", unit="files",
                                                                         out=str(root / "webdataset_again")))
    out["nemo_first"] = run_export(spark, config, wh, ExportRequest(format="nemo", out=str(root / "nemo_first"),
                                                                    version=first_version, unit="files"))
    out["nemo_en"] = run_export(spark, config, wh, ExportRequest(format="nemo", out=str(root / "nemo_en"),
                                                                 where="language = 'en'", unit="segments"))
    gold = {r["audio_id"]: r.asDict(recursive=True)
            for r in spark.read.format("delta").load(wh.path(UTTERANCES)).collect()}
    first = {r["audio_id"] for r in spark.read.format("delta").option("versionAsOf", first_version)
             .load(wh.path(UTTERANCES)).collect()}
    segments = [r.asDict(recursive=True) for r in spark.read.format("delta").load(wh.path(SEGMENTS)).collect()]
    return {"root": root, "summaries": out, "gold": gold, "first": first, "segments": segments}


def text_of(row):
    return row["reference_text"] or row["transcript"]


def read_nemo(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("manifest_*.json")) for line in p.read_text().splitlines()]


def test_nemo_manifest_matches_gold_and_records_the_version(exported):
    gold, root = exported["gold"], exported["root"]
    assert len(gold) == 3 and len(exported["first"]) == 2, "the fixture must publish 2, then 3 rows"
    lines = read_nemo(root / "nemo")
    assert {ln["audio_id"] for ln in lines} == set(gold)
    for ln in lines:
        row = gold[ln["audio_id"]]
        assert Path(ln["audio_filepath"]).exists()
        assert ln["duration"] == pytest.approx(row["duration_s"], abs=1e-3) and ln["text"] == text_of(row)
        assert ln["lang"] == row["language"]
    meta = json.loads((root / "nemo" / "export.json").read_text())
    assert meta["rows"] == 3 and meta["gold_version"] == exported["summaries"]["nemo"]["gold_version"]
    assert meta["hours"] == pytest.approx(sum(r["duration_s"] for r in gold.values()) / 3600, abs=1e-5)
    assert meta["recipe_hash"] and meta["code_version"] and meta["where"] is None


def test_same_version_same_bytes_and_an_earlier_version_gives_the_earlier_set(exported):
    root = exported["root"]
    for fmt, name in (("nemo", "manifest_00000.json"), ("webdataset", "shard-000000.tar")):
        assert (root / fmt / name).read_bytes() == (root / f"{fmt}_again" / name).read_bytes(), fmt
    assert {ln["audio_id"] for ln in read_nemo(root / "nemo_first")} == exported["first"]
    assert exported["summaries"]["nemo_first"]["gold_version"] < exported["summaries"]["nemo"]["gold_version"]
    en = read_nemo(root / "nemo_en")  # --where, and one line per segment with its offset
    en_ids = {a for a, r in exported["gold"].items() if r["language"] == "en"}
    assert {ln["audio_id"] for ln in en} == en_ids
    segs = [s for s in exported["segments"] if s["audio_id"] in en_ids]
    assert len(en) == len(segs) and all("offset" in ln for ln in en)


def test_lhotse_manifests_load_as_a_cutset(exported):
    from lhotse import CutSet, RecordingSet, SupervisionSet, combine

    folder = exported["root"] / "lhotse"
    recordings = combine([RecordingSet.from_file(p) for p in sorted(folder.glob("recordings_*.jsonl"))])
    supervisions = combine([SupervisionSet.from_file(p) for p in sorted(folder.glob("supervisions_*.jsonl"))])
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    gold = exported["gold"]
    assert {c.recording_id for c in cuts} == set(gold)
    for cut in cuts:
        assert cut.duration == pytest.approx(gold[cut.recording_id]["duration_s"], abs=1e-3)
    segs = exported["segments"]
    assert len(supervisions) == len(segs)
    words = [s for s in supervisions if s.alignment and s.alignment.get("word")]
    assert words, "word alignments from gold.segments.words"
    cut = next(iter(cuts))
    assert cut.load_audio().shape[-1] == cut.num_samples  # the recording's path is real audio


def test_hf_parquet_loads_with_the_audio_feature(exported):
    import datasets

    files = sorted(str(p) for p in (exported["root"] / "hf" / "data").glob("*.parquet"))
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    assert isinstance(ds.features["audio"], datasets.Audio)
    gold = exported["gold"]
    raw = ds.cast_column("audio", datasets.Audio(decode=False))
    assert sorted(raw["audio_id"]) == sorted(gold)
    for row in raw:
        src = gold[row["audio_id"]]
        assert row["text"] == text_of(src) and row["duration_s"] == pytest.approx(src["duration_s"])
        assert row["audio"]["bytes"] == Path(row["audio"]["path"]).read_bytes()  # embedded audio


def test_webdataset_shards_read_with_webdataset(exported):
    import webdataset as wds

    shards = sorted(str(p) for p in (exported["root"] / "webdataset").glob("shard-*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    gold = exported["gold"]
    assert sorted(s["__key__"] for s in samples) == sorted(gold)
    for s in samples:
        meta = json.loads(s["json"])
        row = gold[s["__key__"]]
        audio_ext = next(k for k in s if k not in ("__key__", "__url__", "json", "__local_path__"))
        assert s[audio_ext] == Path(meta["audio_filepath"]).read_bytes()
        assert meta["text"] == text_of(row) and meta["duration_s"] == pytest.approx(row["duration_s"])
