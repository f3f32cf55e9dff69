"""Shared fixtures: one real SparkSession with Delta for the whole test session, real files, real models."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from jobs.config import load_config
    from jobs.session import build_session

    config = load_config(overrides={"warehouse": str(tmp_path_factory.mktemp("wh")), "spark": {"master": "local[2]"}})
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
    from jobs.warehouse import Warehouse

    def _attach(config):
        wh = Warehouse(spark, config.warehouse)
        wh.attach()
        return wh

    return _attach


@pytest.fixture(scope="session")
def corpus_dir():
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"real-audio corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture(scope="session")
def corpus_manifest(corpus_dir):
    with open(corpus_dir / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
