"""PII detection on a labelled set of transcript-like sentences (tests/data/pii_cases.tsv): written and
spoken forms in six languages, with hard negatives (times, years, prices, counts, versions, "at noon.
Then"). Sentence-level precision and recall per kind, asserted at the goals."""
from __future__ import annotations

import csv
from pathlib import Path

from annotators.pii import find_pii, find_pii_in_text

CASES = Path(__file__).parent / "data" / "pii_cases.tsv"


def load_cases() -> list[dict]:
    with open(CASES, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def scores(cases) -> tuple[float, float, list]:
    tp = fp = fn = 0
    wrong = []
    for c in cases:
        expected = set() if c["expected"] == "-" else set(c["expected"].split(","))
        found = {f.kind for f in find_pii_in_text(c["text"], c["language"])}
        tp, fp, fn = tp + len(expected & found), fp + len(found - expected), fn + len(expected - found)
        if found != expected:
            wrong.append((c["text"], expected, found))
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), wrong


def test_labelled_set_meets_precision_and_recall_goals():
    cases = load_cases()
    assert len(cases) >= 80
    assert {c["language"] for c in cases} >= {"en", "de", "fr", "es", "it", "pt"}
    assert sum(c["expected"] == "-" for c in cases) >= 40, "hard negatives"
    precision, recall, wrong = scores(cases)
    assert precision >= 0.95 and recall >= 0.9, wrong


def test_known_false_positives_of_the_old_detector_are_gone():
    for text in ("He arrived at noon. Then we left.", "In 1999 we counted 2500 birds.",
                 "The meeting is at 10:30 in room 404.", "Version 3.10.2 costs $1,299."):
        assert find_pii_in_text(text, "en") == [], text


def test_findings_map_to_the_words_they_cover():
    words = "please call two one two , five five five , zero one nine eight thanks".split()
    words = [w for w in words if w != ","]  # ASR gives words; the pauses are lost here
    (f,) = find_pii(words, "en")
    assert f.kind == "phone_number" and words[f.first_word] == "two" and words[f.last_word] == "eight"
    words = "mail me at john dot smith at gmail dot com today".split()
    (f,) = find_pii(words, "en")
    assert f.kind == "email" and words[f.first_word] == "john" and words[f.last_word] == "com"
