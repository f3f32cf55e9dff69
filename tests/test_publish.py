"""Quality gates and publishing on the shared corpus run: conservation, reasons, idempotency, blocking."""
from __future__ import annotations

import re

import pytest
from conftest import REPO, assert_invariant, quarantine_rows
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from jobs.commandline.runner import execute
from jobs.config import load_config, with_overrides
from schemas.gold import CONSTRAINTS, SEGMENTS, UTTERANCES
from schemas.tables import BRONZE, FILE_STATE, RUNS


def rows(spark, wh, spec):
    return [r.asDict(recursive=True) for r in spark.read.format("delta").load(wh.path(spec)).collect()]


def assert_conservation(spark, wh):
    """Every bronze file is in exactly one of: gold (by its audio), quarantine (with a reason)."""
    gold = {r["audio_id"] for r in rows(spark, wh, UTTERANCES)}
    quarantine = {}
    for r in quarantine_rows(spark, wh):
        quarantine.setdefault(r["uri"], []).append(r)
    for b in rows(spark, wh, BRONZE):
        in_gold = b["audio_id"] in gold
        assert in_gold != (b["uri"] in quarantine), b["uri"]
        for q in quarantine.get(b["uri"], []):
            assert q["error_code"] and q["reason"], q
    assert_invariant(spark, wh)
    return gold, quarantine


def rerun(spark, run, **overrides):
    """`voxlake run` again on `run`'s warehouse (a copy of the corpus run's), with other settings."""
    return execute(spark, with_overrides(run["config"], overrides), run["warehouse"], "run")


@pytest.mark.slow
def test_conservation_reasons_and_curation(spark, corpus_warehouse):
    wh = corpus_warehouse["warehouse"]
    assert corpus_warehouse["outcome"].exit_code == 0
    gold, quarantine = assert_conservation(spark, wh)
    by_name = {u.rsplit("/", 1)[1]: q for u, q in quarantine.items()}
    gold_rows = {r["uri"].rsplit("/", 1)[1]: r for r in rows(spark, wh, UTTERANCES)}
    noise = ["pink_noise.wav", "tone_440hz.flac", "Kevin_MacLeod_-_Vibe_Ace.ogg", "glacier-bay-humpback.ogg",
             "speechbrain_noise2.wav", "Brahms_Hungarian_Dance_5_string_orchestra.ogg"]
    # music, noise and tones: quarantined by the expectation that caught them
    for name in noise:
        (q,) = by_name[name]
        assert q["stage"] == "publish" and "speech_ratio_floor" in q["failed_expectations"], q
    # bad inputs: quarantined at the stage that found them
    assert by_name["random_bytes.wav"][0]["stage"] == "ingest"
    assert by_name["nan_float.wav"][0]["stage"] == "annotate"
    # clean speech is curated
    assert "en_weather.wav" in gold_rows and "en_library.flac" in gold_rows
    lj = [n for n in gold_rows if n.startswith("LJ001")]
    assert "jfk.flac" in gold_rows and len(lj) >= 25, sorted(gold_rows)
    jfk = gold_rows["jfk.flac"]
    assert jfk["language"] == "en" and "country" in jfk["transcript"] and jfk["quality_band"]
    segments = rows(spark, wh, SEGMENTS)
    assert {s["audio_id"] for s in segments} == gold
    assert all(s["words"] for s in segments if s["text"])


@pytest.mark.slow
def test_second_run_creates_no_new_versions(spark, corpus_copy):
    wh = corpus_copy["warehouse"]
    versions = {s.qualified: wh.table_version(s) for s in (BRONZE, FILE_STATE, UTTERANCES, SEGMENTS)}
    outcome = rerun(spark, corpus_copy)
    assert outcome.exit_code == 0
    assert outcome.results["annotate"].candidates == 0 and outcome.results["publish"].candidates == 0
    assert {s.qualified: wh.table_version(s) for s in (BRONZE, FILE_STATE, UTTERANCES, SEGMENTS)} == versions


@pytest.mark.slow
def test_failed_critical_check_blocks_publishing(spark, corpus_copy, tmp_path):
    wh = corpus_copy["warehouse"]
    before = (wh.table_version(UTTERANCES), wh.table_version(SEGMENTS), wh.table_version(FILE_STATE))
    # a recipe change re-judges every row; the batch's mean DNSMOS cannot reach 4.9
    outcome = rerun(spark, corpus_copy, publish={"recipe": {"snr_db_min": 5.5},
                                                      "critical": {"mean_dnsmos_min": 4.9}})
    assert outcome.results["publish"].candidates > 0
    assert outcome.exit_code == 1
    assert outcome.results["publish"].blocked
    # gold is unchanged (the whole batch is judged before any chunk commits)
    assert (wh.table_version(UTTERANCES), wh.table_version(SEGMENTS)) == before[:2]
    last = sorted(rows(spark, wh, RUNS), key=lambda r: r["started_at"])[-1]
    assert last["status"] == "blocked" and last["validation_success"] is False
    assert "mean_dnsmos_in_range" in last["message"]
    # the batch's files gold does not hold wait with the reason; curated files stay curated
    state = rows(spark, wh, FILE_STATE)
    waiting = [r for r in state if r["status"] == "pending"]
    assert waiting and all(r["error_code"] == "PUBLISH_BLOCKED" and last["run_id"] in r["reason"]
                           and f"--accept {last['run_id']}" in r["reason"] for r in waiting)
    assert outcome.results["invariant"].holds and outcome.results["invariant"].pending == len(waiting)
    from jobs.commandline.runner import write_report

    write_report(spark, corpus_copy["config"], wh, str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert "Publishing is blocked" in page and f"voxlake publish --accept {last['run_id']}" in page
    # the next night, with nothing new, is blocked the same way (a systemic failure is not forgotten)
    again = rerun(spark, corpus_copy, publish={"recipe": {"snr_db_min": 5.5}, "critical": {"mean_dnsmos_min": 4.9}})
    assert again.exit_code == 1 and (wh.table_version(UTTERANCES), wh.table_version(SEGMENTS)) == before[:2]
    # an operator who reviewed the batch accepts it: published under the new recipe, nothing left pending
    blocked_id = sorted(rows(spark, wh, RUNS), key=lambda r: r["started_at"])[-1]["run_id"]
    accepted = execute(spark, with_overrides(corpus_copy["config"], {
        "publish": {"recipe": {"snr_db_min": 5.5}, "critical": {"mean_dnsmos_min": 4.9},
                    "accept_run": blocked_id}}), wh, "publish")
    assert accepted.exit_code == 0 and not accepted.results["publish"].blocked
    assert accepted.results["invariant"].holds and accepted.results["invariant"].pending == 0
    assert f"accepted the batch run {blocked_id} blocked" in accepted.record.message
    assert_conservation(spark, wh)


@pytest.mark.slow
def test_changing_a_row_threshold_moves_rows_and_keeps_conservation(spark, corpus_copy):
    wh = corpus_copy["warehouse"]
    gold_before = {r["audio_id"]: r["dnsmos_ovrl"] for r in rows(spark, wh, UTTERANCES)}
    strict = rerun(spark, corpus_copy, publish={"recipe": {"dnsmos_ovrl_min": 3.3}})
    assert strict.exit_code == 0
    gold_strict, quarantine = assert_conservation(spark, wh)
    moved = {a for a, ovrl in gold_before.items() if ovrl < 3.3}
    assert moved, "the stricter floor should reject some curated rows"
    assert gold_strict == set(gold_before) - moved
    q_ids = {q["audio_id"]: q for qs in quarantine.values() for q in qs if q["stage"] == "publish"}
    assert all("dnsmos_floor" in q_ids[a]["failed_expectations"] for a in moved)
    # and back: the same rows return to gold and leave quarantine
    back = rerun(spark, corpus_copy)
    assert back.exit_code == 0
    gold_back, _ = assert_conservation(spark, wh)
    assert gold_back == set(gold_before)


def readme_queries() -> list[str]:
    """Every SQL example of the README and of docs/."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    return [q.strip() for page in pages for q in re.findall(r"```sql\n(.*?)```", page.read_text(encoding="utf-8"),
                                                             flags=re.S)]


@pytest.mark.slow
def test_readme_example_queries_run_and_return_rows(spark, corpus_warehouse):
    wh = corpus_warehouse["warehouse"]
    wh.attach_existing()
    queries = readme_queries()
    assert len(queries) >= 4
    for q in queries:
        assert spark.sql(q).count() > 0, q


def test_unknown_values_fail_the_measured_expectations_unless_optional(spark):
    """A null floor input of a clip (annotator failed or skipped) fails the companion 'measured'
    expectation; a file without clips fails clips_measured. A value an expensive annotator did not
    compute because the cascade gated the file (gated_by) is not needed: only the check that gated it fails."""
    from expectations.gate import load_suite_spec, with_row_failures
    from jobs.stages.recipe import suite_values

    config = load_config(overrides={"warehouse": "unused"})
    good = {"duration_s": 3.0, "speech_ratio": 0.8, "snr_db": 30.0, "dnsmos_ovrl": 3.5, "language": "en",
            "language_prob": 0.99, "language_agrees": True, "text": "hello there", "hallucination": False,
            "has_pii": False, "clipping_ratio": 0.0, "music_ratio": 0.0, "n_speakers": 1, "speaker_purity": 1.0,
            "gated_by": None}
    schema = ("audio_id string, duration_s double, speech_ratio double, snr_db double, dnsmos_ovrl double, "
              "language string, language_prob double, language_agrees boolean, text string, hallucination boolean, "
              "has_pii boolean, clipping_ratio double, music_ratio double, n_speakers int, speaker_purity double, "
              "gated_by string")
    unmeasured = {"dnsmos_ovrl": None, "language": None, "language_prob": None, "language_agrees": None,
                  "text": None, "hallucination": None, "has_pii": None, "speaker_purity": None, "n_speakers": None}
    rows = [{"audio_id": "good", **good}, {"audio_id": "no_mos", **good, "dnsmos_ovrl": None},
            {"audio_id": "no_text", **good, "hallucination": None, "has_pii": None},
            {"audio_id": "no_levels", **good, "clipping_ratio": None},
            {"audio_id": "mixed", **good, "speaker_purity": 0.7, "n_speakers": 2},
            {"audio_id": "gated", **good, **unmeasured, "speech_ratio": 0.1, "gated_by": "speech_ratio_floor"},
            {"audio_id": "ungated", **good, **unmeasured, "speech_ratio": 0.1}]
    df = spark.createDataFrame([tuple(r[c.split()[0]] for c in schema.split(", ")) for r in rows], schema)

    def judge(cfg, df=df, suite="clips"):
        spec = load_suite_spec(suite, suite_values(cfg))
        return {r["audio_id"]: r["failed_expectations"] for r in with_row_failures(df, spec).collect()}

    strict = judge(config)
    assert strict == {"good": None, "no_mos": ["dnsmos_measured"], "no_text": ["text_checked"],
                      "no_levels": ["levels_measured"], "mixed": None, "gated": ["speech_ratio_floor"],
                      "ungated": ["dnsmos_measured", "language_known", "speech_ratio_floor", "text_checked",
                                  "transcript_present"]}
    assert judge(with_overrides(config, {"publish": {"recipe": {"max_speakers": 1}}}))["gated"] == \
        ["speech_ratio_floor"]  # speakers_measured applies, and is not needed either
    relaxed = judge(with_overrides(config, {"publish": {"recipe": {"optional_annotators": ["quality", "levels"]}}}))
    assert relaxed["no_mos"] is None and relaxed["no_levels"] is None and relaxed["no_text"] == ["text_checked"]
    single = judge(with_overrides(config, {"publish": {"recipe": {"max_speakers": 1}}}))
    assert single["mixed"] == ["speaker_ceiling", "speaker_purity_floor"] and single["good"] is None
    files = spark.createDataFrame([("cut", 16000, 7000.0, 3, None), ("uncut", 16000, 7000.0, None, None)],
                                  "audio_id string, sample_rate int, effective_hz double, n_clips int, "
                                  "duplicate_of string")
    assert judge(config, files, "files") == {"cut": None, "uncut": ["clips_measured"]}


@pytest.mark.slow
def test_gold_enforces_its_check_constraints(spark, corpus_warehouse):
    """gold's CHECK constraints are set when the table is created: a row that breaks one is refused."""
    wh = corpus_warehouse["warehouse"]
    detail = DeltaTable.forPath(spark, wh.path(UTTERANCES)).detail().first()
    assert {k: v for k, v in detail["properties"].items() if k.startswith("delta.constraints.")} == \
        {f"delta.constraints.{name}": check for name, check in CONSTRAINTS[UTTERANCES].items()}
    one = spark.read.format("delta").load(wh.path(UTTERANCES)).limit(1).withColumn("duration_s", F.lit(-1.0))
    with pytest.raises(Exception, match="duration_positive"):
        one.write.format("delta").mode("append").save(wh.path(UTTERANCES))
