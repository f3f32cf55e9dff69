"""Shared fixtures: one real SparkSession with Delta for the whole test session, real files, real models."""
from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"  # the real-audio test corpus, in the repository
sys.path.insert(0, str(Path(__file__).parent))
# the test-only annotators (tests/plugins.py) must import in Spark's Python workers and in CLI subprocesses,
# which inherit this environment
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))


def pytest_addoption(parser):
    parser.addoption("--reverse", action="store_true",
                     help="run the tests in reverse order (no test may rely on what another one did)")


# The longest modules in `make test` (its --durations table), longest first. `make test` runs the modules on
# two pytest-xdist workers (`--dist loadfile`: a module's tests stay on one worker, so its module fixtures
# are built once), handing them out in this order first: the short ones then fill in around the long ones
# instead of a long one running alone at the end.
LONGEST_FIRST = ("test_nightly", "test_robustness", "test_annotate", "test_clips", "test_curation",
                 "test_asr_corpus", "test_cluster", "test_publish", "test_export")


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(LONGEST_FIRST)))
    if config.getoption("--reverse"):
        items.reverse()


@pytest.fixture(scope="module", autouse=True)
def _annotator_registry():
    """A module's plugins (annotate.plugins, registered by the runs it makes) leave the process's annotator
    registry as they found it: the registry decides silver's columns for every warehouse attached later."""
    from annotators.registry import ANNOTATORS

    before = dict(ANNOTATORS)
    yield
    ANNOTATORS.clear()
    ANNOTATORS.update(before)


def copy_of(spark, wh, config, dest):
    """(warehouse, config) of a copy of `wh`'s folder at `dest`: for a test that changes a warehouse other
    tests read (a rerun appends to ops.runs, maintain compacts). Delta logs hold relative paths, so the
    copy is a warehouse of its own."""
    import shutil

    from jobs.config import with_overrides
    from jobs.warehouse.store import Warehouse

    shutil.copytree(wh.root, dest)
    return Warehouse(spark, str(dest)), with_overrides(config, {"warehouse": str(dest)})


def assert_invariant(spark, warehouse, pending: int = 0):
    """Every file in exactly one of gold or quarantine (or `pending` files waiting), computed afresh from
    the tables (jobs.warehouse.reconcile.check)."""
    from jobs.warehouse.reconcile import check

    found = check(spark, warehouse, fresh=True)
    assert found.holds and found.pending == pending, found.line()
    return found


def quarantine_rows(spark, wh) -> list[dict]:
    """The quarantined files (ops.quarantine is a view of these rows of ops.file_state)."""
    from schemas.tables import FILE_STATE

    df = spark.read.format("delta").load(wh.path(FILE_STATE)).where("status = 'quarantined'")
    return [r.asDict(recursive=True) for r in df.collect()]


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from jobs.config import load_config
    from jobs.spark.session import build_session

    config = load_config(overrides={"warehouse": str(tmp_path_factory.mktemp("wh")), "spark": {"master": "local[2,4]"}})  # 4 attempts per task, as on a cluster
    session = build_session(config, app_name="voxlake-tests")
    yield session
    session.stop()


@pytest.fixture
def make_config(tmp_path):
    """Build a Config for a fresh warehouse under tmp_path (override anything with keyword sections)."""
    from jobs.config import load_config

    def _make(sources=(), manifests=(), warehouse=None, **sections):
        overrides = {"warehouse": str(warehouse or tmp_path / "warehouse"), **sections}
        return load_config(overrides=overrides, sources=list(map(str, sources)), manifests=list(map(str, manifests)))

    return _make


@pytest.fixture
def warehouse_for(spark):
    from jobs.warehouse.store import Warehouse

    def _attach(config):
        wh = Warehouse(spark, config.warehouse)
        wh.attach()
        return wh

    return _attach


def read_corpus_manifest() -> list[dict]:
    """The corpus's MANIFEST.tsv rows. The corpus is part of the repository: without it the tests fail
    (a skip would let `make test` pass while testing far less)."""
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.fail(f"the real-audio test corpus is missing from {CORPUS} (it is part of the repository)")
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="session")
def corpus_dir():
    read_corpus_manifest()
    return CORPUS


@pytest.fixture(scope="session")
def corpus_manifest():
    return read_corpus_manifest()


def _default_annotators() -> list[str]:
    from jobs.config import load_config

    return list(load_config(overrides={"warehouse": "unused"}).annotate.annotators)


# For end-to-end tests that are not about speakers, scenes or the second MOS opinion: the shipped default
# list without the three annotators that load torch models (a worker's start-up and most of its memory);
# `fingerprint` stays, so link still runs. Events not run: its companion expectation is made optional.
TORCH_ANNOTATORS = {"speakers", "distillmos", "events"}
LEAN_ANNOTATE = {"annotators": [n for n in _default_annotators() if n not in TORCH_ANNOTATORS]}
LEAN_RECIPE = {"optional_annotators": ["events"]}

DUPLICATED = "speech/en/librispeech_2412-153948-0000.flac"  # the recording copied by make_duplicates


@pytest.fixture(scope="session")
def corpus_warehouse(spark, tmp_path_factory):
    """The real corpus, the bad-input matrix and the bundled samples through `voxlake run`, once.

    Several test modules assert on this one warehouse, so the expensive part (every annotator, real
    models, on ~12 minutes of audio) runs once per test session.
    """
    import json

    from audio_factory import make_bad_inputs

    from jobs.commandline.runner import execute
    from jobs.config import load_config
    from jobs.warehouse.store import Warehouse

    root = tmp_path_factory.mktemp("corpus_run")
    bad = root / "bad_inputs"
    expected_bad = make_bad_inputs(bad)
    sources = [str(bad), str(REPO / "samples" / "audio")]
    manifests = [str(REPO / "samples" / "manifest.jsonl")]
    corpus_manifest = read_corpus_manifest()
    manifest = root / "corpus.jsonl"
    sources.insert(0, str(CORPUS))
    manifests.insert(0, str(manifest))
    # copies of one corpus recording for `voxlake link` (tests/test_link.py)
    from audio_factory import make_duplicates

    make_duplicates(CORPUS / DUPLICATED, root / "duplicates")
    sources.append(str(root / "duplicates"))
    with open(manifest, "w", encoding="utf-8") as f:
        for m in corpus_manifest:
            entry = {"path": str(CORPUS / m["path"]), "kind": m["kind"]}
            if m["reference_transcript"]:
                entry["text"] = m["reference_transcript"]
            if m["language"]:
                entry["language"] = m["language"]
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
    config = load_config(
        overrides={"warehouse": str(root / "wh"), "annotate": {"files_per_batch": 2}},
        sources=sources,
        manifests=manifests,
    )
    wh = Warehouse(spark, config.warehouse)
    outcome = execute(spark, config, wh, "run")
    return {"warehouse": wh, "config": config, "outcome": outcome, "bad_dir": bad, "expected_bad": expected_bad}


@pytest.fixture
def corpus_copy(spark, corpus_warehouse, tmp_path):
    """The corpus run's warehouse, copied: for the tests that run again on it (reruns, other recipes)."""
    wh, config = copy_of(spark, corpus_warehouse["warehouse"], corpus_warehouse["config"], tmp_path / "wh")
    return {**corpus_warehouse, "warehouse": wh, "config": config}
