"""Curation under change: run, change the world, run again; after every run each listed URI is in exactly
one of gold and quarantine, and gold describes the URI's current bytes and manifest.

One small real scenario (LJ Speech clips, every annotator, tiny.en for speed), shared by the assertions.
"""
from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import LEAN_ANNOTATE, LEAN_RECIPE, assert_invariant, copy_of, quarantine_rows

from jobs.commandline.runner import execute
from jobs.config import load_config
from jobs.warehouse.catalog import SILVER
from schemas.gold import SEGMENTS, UTTERANCES
from schemas.tables import BRONZE, FILE_STATE

pytestmark = pytest.mark.slow  # three pipeline runs with real models

LJ = "speech/en/LJ001-{:04d}.wav"


def table(spark, wh, spec) -> list[dict]:
    return [r.asDict(recursive=True) for r in spark.read.format("delta").load(wh.path(spec)).collect()]


def assert_one_place(spark, wh) -> dict:
    """The invariant, per URI in bronze; returns {file name: (status, file_state row, gold row or None)}."""
    gold = {r["audio_id"]: r for r in table(spark, wh, UTTERANCES)}
    state = {r["uri"]: r for r in table(spark, wh, FILE_STATE)}
    silver = {r["audio_id"]: r for r in table(spark, wh, SILVER)}
    bronze = table(spark, wh, BRONZE)
    live_ids = set()
    out = {}
    for b in bronze:
        s = state[b["uri"]]
        assert s["status"] in ("curated", "quarantined"), s
        live = b["error_code"] is None and b["deleted_at"] is None
        in_gold = live and b["audio_id"] in gold
        assert in_gold == (s["status"] == "curated"), (b["uri"], s)
        assert s["audio_id"] == b["audio_id"], (b["uri"], s["audio_id"], b["audio_id"])
        if s["status"] == "quarantined":
            assert s["error_code"] and s["reason"], s
        if live:
            live_ids.add(b["audio_id"])
        g = gold.get(b["audio_id"]) if in_gold else None
        if g:
            assert b["uri"] in g["uris"]
            # gold holds what the current bytes say
            assert g["transcript"] == silver[b["audio_id"]]["asr"]["text"].strip()
        out[b["uri"].rsplit("/", 1)[1]] = (s["status"], s, g)
    assert set(gold) <= live_ids, "gold holds audio that no listed file has"
    segs = {r["audio_id"] for r in table(spark, wh, SEGMENTS)}
    assert segs <= set(gold)
    assert_invariant(spark, wh)
    return out


@pytest.fixture(scope="module")
def world(spark, corpus_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("curation")
    src = root / "audio"
    src.mkdir()
    for name, k in (("a.wav", 1), ("b.wav", 3), ("c.wav", 6)):
        shutil.copyfile(corpus_dir / LJ.format(k), src / name)
    # decodes to NaN: quarantined at annotate (fixed in place later)
    nan = np.full(16000, np.nan, np.float32)
    sf.write(src / "broken.wav", nan, 16000, subtype="FLOAT")
    # 0.8 s of speech: shorter than a clip may be (clip_duration), so the cascade computes no quality for it
    x, sr = sf.read(corpus_dir / LJ.format(7))
    sf.write(src / "short.wav", x[int(1.0 * sr): int(1.8 * sr)], sr)
    manifest = root / "manifest.jsonl"
    refs = {"a.wav": 1, "b.wav": 3, "c.wav": 6}
    import csv

    with open(corpus_dir / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        text = {r["path"]: r["reference_transcript"]
                for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}
    with open(manifest, "w") as f:
        for name, k in refs.items():
            f.write(json.dumps({"path": f"audio/{name}", "text": text[LJ.format(k)]}) + "\n")
    config = load_config(
        overrides={"warehouse": str(root / "wh"),
                   "annotate": {**LEAN_ANNOTATE, "files_per_batch": 2, "params": {"asr": {"model": "tiny.en"}}},
                   "publish": {"recipe": LEAN_RECIPE}},
        sources=[str(src)], manifests=[str(manifest)],
    )
    from jobs.warehouse.store import Warehouse

    wh = Warehouse(spark, config.warehouse)
    first = execute(spark, config, wh, "run")
    after_first = assert_one_place(spark, wh)
    silver_first = {r["audio_id"]: r for r in table(spark, wh, SILVER)}
    bronze_first = {r["uri"].rsplit("/", 1)[1]: r for r in table(spark, wh, BRONZE)}

    # change the world
    later = time.time() + 5
    shutil.copyfile(corpus_dir / LJ.format(4), src / "a.wav")  # other speech at the same URI
    (src / "b.wav").unlink()  # deleted
    shutil.copyfile(corpus_dir / LJ.format(5), src / "broken.wav")  # fixed in place
    shutil.copyfile(src / "c.wav", src / "dup.wav")  # identical audio under a new URI
    for name in ("a.wav", "broken.wav", "dup.wav"):
        os.utime(src / name, (later, later))
    edited = "An edited reference that says something else entirely."
    # b.wav is gone from the folder and from the manifest: no source lists it any more
    lines = [json.loads(line) for line in manifest.read_text().splitlines() if "b.wav" not in line]
    for entry in lines:
        if entry["path"].endswith("c.wav"):
            entry["text"] = edited
    manifest.write_text("".join(json.dumps(e) + "\n" for e in lines))
    second = execute(spark, config, wh, "run")
    after_second = assert_one_place(spark, wh)
    versions = {s.qualified: wh.table_version(s) for s in (BRONZE, FILE_STATE, SILVER, UTTERANCES, SEGMENTS)}
    third = execute(spark, config, wh, "run")
    return {
        "wh": wh, "config": config, "first": first, "second": second, "third": third, "after_first": after_first,
        "after_second": after_second, "silver_first": silver_first, "bronze_first": bronze_first,
        "edited": edited, "versions": versions, "text": text,
    }


def test_first_run_places_every_file(world):
    places = world["after_first"]
    assert world["first"].exit_code == 0
    assert places["a.wav"][0] == places["b.wav"][0] == places["c.wav"][0] == "curated", places
    status, state, _ = places["broken.wav"]
    assert status == "quarantined" and state["stage"] == "annotate" and state["error_code"] == "NON_FINITE"


def test_a_file_too_short_to_be_a_clip_is_quarantined_for_that_alone(world):
    """The cascade gates it (clip_duration): no asr or quality ran, and their values are not asked for."""
    status, state, _ = world["after_first"]["short.wav"]
    assert status == "quarantined" and "clip_duration" in state["failed_expectations"], state
    assert not {"dnsmos_measured", "language_known", "transcript_present"} & set(state["failed_expectations"])
    silver = {r["uri"].rsplit("/", 1)[1]: r for r in world["silver_first"].values()}
    assert silver["short.wav"]["quality"]["error_code"] == silver["short.wav"]["asr"]["error_code"] == "GATED"


def test_replaced_bytes_replace_the_gold_row(spark, world):
    wh = world["wh"]
    old_id = world["bronze_first"]["a.wav"]["audio_id"]
    status, state, gold = world["after_second"]["a.wav"]
    assert status == "curated" and state["audio_id"] != old_id
    assert old_id not in {r["audio_id"] for r in table(spark, wh, UTTERANCES)}
    # the transcript is that of the new recording (LJ001-0004), not of the old one (LJ001-0001)
    from annotators.text import error_rates

    new_ref, old_ref = world["text"][LJ.format(4)], world["text"][LJ.format(1)]
    assert error_rates(new_ref, gold["transcript"], "en")[0] < 0.3
    assert error_rates(old_ref, gold["transcript"], "en")[0] > 0.7


def test_deleted_file_leaves_gold_and_is_marked_in_bronze(spark, world):
    wh = world["wh"]
    status, state, gold = world["after_second"]["b.wav"]
    assert status == "quarantined" and state["error_code"] == "NOT_FOUND" and gold is None
    (b,) = [r for r in table(spark, wh, BRONZE) if r["uri"].endswith("/b.wav")]
    assert b["deleted_at"] is not None and b["error_code"] == "NOT_FOUND"
    assert world["bronze_first"]["b.wav"]["audio_id"] not in {r["audio_id"] for r in table(spark, wh, UTTERANCES)}
    assert world["second"].results["ingest"].deleted == 1


def test_fixed_file_leaves_quarantine(world):
    status, state, gold = world["after_second"]["broken.wav"]
    assert status == "curated" and gold is not None, state


def test_edited_reference_recomputes_text_only_and_reaches_gold(spark, world):
    wh = world["wh"]
    c_id = world["bronze_first"]["c.wav"]["audio_id"]
    before = world["silver_first"][c_id]
    after = {r["audio_id"]: r for r in table(spark, wh, SILVER)}[c_id]
    for name in ("levels", "vad", "snr", "quality", "asr"):
        assert json.dumps(after[name], sort_keys=True) == json.dumps(before[name], sort_keys=True), name
    assert after["text"]["inputs_hash"] != before["text"]["inputs_hash"]
    _, _, gold = world["after_second"]["c.wav"]
    assert gold["reference_text"] == world["edited"]
    assert gold["wer"] == after["text"]["wer"] and gold["wer"] > 0.8  # nothing like the edited text


def test_duplicate_uri_of_curated_audio_is_curated_too(world):
    status_c, _, gold_c = world["after_second"]["c.wav"]
    status_d, _, gold_d = world["after_second"]["dup.wav"]
    assert status_c == status_d == "curated"
    assert gold_c["audio_id"] == gold_d["audio_id"] and len(gold_d["uris"]) == 2


def test_a_rerun_after_the_change_commits_nothing(world):
    wh = world["wh"]
    assert world["third"].exit_code == 0
    assert {s.qualified: wh.table_version(s) for s in (BRONZE, FILE_STATE, SILVER, UTTERANCES, SEGMENTS)} == \
        world["versions"]


def test_quarantine_view_matches_file_state(spark, world):
    wh = world["wh"]
    wh.attach_existing()
    view = {r["uri"] for r in spark.sql("SELECT uri FROM ops.quarantine").collect()}
    assert view == {r["uri"] for r in quarantine_rows(spark, wh)}


def test_pruning_deleted_files_as_the_docs_say(spark, world, tmp_path):
    """docs/curation.md's two prune statements, run through `voxlake sql`'s code path, on a copy of the
    world's warehouse (they change it)."""
    import io
    import re

    from conftest import REPO

    from jobs.commands.sql import run_sql

    wh, _ = copy_of(spark, world["wh"], world["config"], tmp_path / "wh")
    readme = (REPO / "docs" / "curation.md").read_text(encoding="utf-8")
    block = re.search(r"To prune.*?```bash\n(.*?)```", readme, flags=re.S).group(1)
    statements = re.findall(r'voxlake sql --warehouse W "(.*?)"\n', block.replace("\n  ", " "), flags=re.S)
    assert len(statements) == 2
    for sql in statements:
        run_sql(spark, wh, sql.replace("INTERVAL 30 DAYS", "INTERVAL 0 DAYS"), "json", 10, out=io.StringIO())
    assert not [r for r in table(spark, wh, BRONZE) if r["uri"].endswith("/b.wav")]
    assert not [r for r in table(spark, wh, FILE_STATE) if r["uri"].endswith("/b.wav")]
    places = assert_one_place(spark, wh)
    assert "b.wav" not in places and places["a.wav"][0] == "curated"
