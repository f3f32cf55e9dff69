"""`voxlake link` and the new annotators on the shared corpus run: duplicates (one copy in gold), speaker
clusters, speaker counts of the multi-speaker recordings, music kept out by its ceiling, idempotent rerun."""
from __future__ import annotations

import pytest
from conftest import DUPLICATED, quarantine_rows

from jobs.warehouse.catalog import CLIP_STATE, SILVER
from schemas.gold import UTTERANCES
from schemas.tables import BRONZE, LINKS

pytestmark = pytest.mark.slow  # the shared corpus run

BIRD_CLASSES = {"Bird", "Bird vocalization, bird call, bird song", "Chirp, tweet"}



@pytest.fixture(scope="module")
def by_file(spark, corpus_warehouse):
    """file name -> bronze row joined with its silver annotations and links (one row per URI)."""
    wh = corpus_warehouse["warehouse"]
    bronze = spark.read.format("delta").load(wh.path(BRONZE)).where("error_code IS NULL").select("uri", "audio_id")
    silver = spark.read.format("delta").load(wh.path(SILVER)).select(
        "audio_id", "speakers", "events", "distillmos", "fingerprint")
    links = spark.read.format("delta").load(wh.path(LINKS))
    rows = bronze.join(silver, "audio_id").join(links, "audio_id", "left").collect()
    return {r["uri"].rsplit("/", 1)[1]: r.asDict(recursive=True) for r in rows}


def test_copies_of_one_recording_are_one_group_and_one_reaches_gold(spark, corpus_warehouse, by_file):
    wh = corpus_warehouse["warehouse"]
    names = [DUPLICATED.rsplit("/", 1)[1], "copy_same_pcm.wav", "copy.mp3", "copy_22k_minus3db.wav",
             "copy_trimmed.flac"]
    rows = [by_file[n] for n in names]
    assert len({r["duplicate_group_id"] for r in rows}) == 1, {n: r["duplicate_group_id"] for n, r in zip(names, rows, strict=True)}
    # the same PCM in another container has the same hash; the re-encoded copies do not
    assert rows[0]["fingerprint"]["pcm_sha256"] == rows[1]["fingerprint"]["pcm_sha256"]
    assert rows[2]["fingerprint"]["pcm_sha256"] != rows[0]["fingerprint"]["pcm_sha256"]
    kept = [r for r in rows if r["duplicate_of"] is None]
    assert len(kept) == 1 and all(r["duplicate_of"] == kept[0]["audio_id"] for r in rows if r is not kept[0])
    assert rows[0]["duplicate_group_size"] == 5
    gold = {r["audio_id"] for r in spark.read.format("delta").load(wh.path(UTTERANCES)).collect()}
    assert [r["audio_id"] in gold for r in rows] == [r is kept[0] for r in rows]  # only the kept copy
    quarantined = {q["uri"].rsplit("/", 1)[1]: q for q in quarantine_rows(spark, wh)}
    for name, r in zip(names, rows, strict=True):
        if r["duplicate_of"] is not None:
            q = quarantined[name]
            assert "near_duplicate" in q["failed_expectations"] and r["duplicate_of"] in q["reason"], q
    # unrelated recordings are not duplicates of each other
    singles = [r for n, r in by_file.items() if n.startswith("LJ001")]
    assert all(r["duplicate_group_size"] == 1 for r in singles)


def test_speaker_counts_and_clusters(by_file):
    # the corpus's two-speaker recordings (RTTM: two speakers each)
    assert by_file["pyannote_sample.wav"]["speakers"]["n_speakers"] == 2
    assert by_file["pyannote_ami_dev00.wav"]["speakers"]["n_speakers"] == 2
    turns = by_file["pyannote_sample.wav"]["speakers"]["turns"]
    assert {t["speaker"] for t in turns} == {0, 1} and all(t["end_s"] > t["start_s"] for t in turns)
    emb = by_file["jfk.flac"]["speakers"]["embedding"]
    assert len(emb) == 256 and sum(v * v for v in emb) == pytest.approx(1.0, abs=1e-4)
    # two different speakers are not one cluster; one reader's utterances mostly are
    assert by_file["jfk.flac"]["speaker_cluster_id"] != by_file["LJ001-0001.wav"]["speaker_cluster_id"]
    lj = [r["speaker_cluster_id"] for n, r in by_file.items() if n.startswith("LJ001") and n.endswith(".wav")]
    assert max(lj.count(c) for c in set(lj)) >= 0.8 * len(lj), lj
    assert by_file["LJ001-0001.wav"]["speaker_cluster_id"] != by_file["librispeech_1995-1837-0001.wav"][
        "speaker_cluster_id"]


def test_music_is_tagged_and_kept_out_by_its_ceiling(spark, corpus_warehouse, by_file):
    wh = corpus_warehouse["warehouse"]
    quarantined = {q["uri"].rsplit("/", 1)[1]: q for q in quarantine_rows(spark, wh)}
    clip_failures = {}  # audio_id -> the expectations its candidate clips failed
    for r in spark.read.format("delta").load(wh.path(CLIP_STATE)).where("status = 'quarantined'").collect():
        clip_failures.setdefault(r["audio_id"], set()).update(r["failed_expectations"] or ())
    for name in ("Kevin_MacLeod_-_Vibe_Ace.ogg", "Brahms_Hungarian_Dance_5_string_orchestra.ogg",
                 "sorohanro_-_solo-trumpet-06.hq.ogg"):
        events = by_file[name]["events"]
        assert events["event_top"] == "Music" and events["music_ratio"] > 0.5, events
        assert name in quarantined, (name, "curated")
        # a recording longer than clips.max_s is judged clip by clip: its file row names the failures most
        # common among its clips, so the ceiling is asserted over the file's and its clips' failures
        failed = set(quarantined[name]["failed_expectations"] or ()) | clip_failures.get(by_file[name]["audio_id"], set())
        assert "music_ceiling" in failed, (name, quarantined[name], sorted(failed))
    assert by_file["glacier-bay-humpback.ogg"]["events"]["event_top"] == "Animal"
    # YAMNet's nearest classes swap places from one CPU to another (its quantised ONNX model runs other
    # kernels on AVX2 and on AVX-512): any of AudioSet's bird classes is right
    assert by_file["robin-bird-whistling.hq.ogg"]["events"]["event_top"] in BIRD_CLASSES
    speech = [r["events"] for n, r in by_file.items() if n.startswith("LJ001")]
    assert all(e["event_top"] == "Speech" and e["music_ratio"] == 0 for e in speech)
    assert all(1.0 <= r["distillmos"]["mos"] <= 5.0 for r in by_file.values() if r["distillmos"]["status"] == "ok")


def test_gold_has_the_new_columns_and_link_reruns_change_nothing(spark, corpus_copy):
    from jobs.stages.link import run_link
    from jobs.warehouse.ledger import RunRecord
    from jobs.warehouse.state import StageState

    wh = corpus_copy["warehouse"]
    gold = spark.read.format("delta").load(wh.path(UTTERANCES))
    for col in ("n_speakers", "speaker_cluster_id", "music_ratio", "event_top", "distillmos", "plcmos",
                "duplicate_group_id"):
        assert gold.where(f"{col} IS NULL").count() == 0, col
    version = wh.table_version(LINKS)
    config = corpus_copy["config"]
    # nothing new since the run's link: skipped without reading silver
    assert run_link(spark, config, wh, RunRecord(job="link", config_hash="test")).skipped == \
        "nothing changed since the last link"
    # recomputed from scratch (state file gone): same links, so no commit
    wh.remove(StageState(wh, "link").path)
    again = run_link(spark, config, wh, RunRecord(job="link", config_hash="test"))
    assert not again.skipped and again.changed == 0 and wh.table_version(LINKS) == version
    assert again.duplicate_groups >= 1 and again.speaker_clusters >= 1
