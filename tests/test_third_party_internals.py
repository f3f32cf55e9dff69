"""The private parts of pyspark, faster-whisper and speechmos that voxlake uses are still there.

Each library's private parts are reached through one module (jobs/spark/internals.py,
annotators/faster_whisper_internals.py, annotators/speechmos_internals.py). After an upgrade these
tests fail first, naming the module to update, instead of a run failing deep inside a Spark task.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
from pathlib import Path

import numpy as np


def _changed(library: str, door: str, what: list[str]) -> str:
    version = importlib.metadata.version(library)
    return (f"{library} {version} no longer has what {door} uses; update that module (and its pin):\n  "
            + "\n  ".join(what))


def test_pyspark_internals(spark, tmp_path):
    from pyspark import SparkContext

    from jobs.spark import internals

    door = "jobs/spark/internals.py"
    missing = [f"{owner}.{name}" for owner, name in internals.PRIVATE_NAMES
               if not hasattr({"pyspark.SparkContext": spark.sparkContext, "pyspark.sql.SparkSession": spark,
                               "pyspark.sql.DataFrame": spark.range(1)}[owner], name)]
    assert not missing, _changed("pyspark", door, missing)
    assert callable(SparkContext._ensure_initialized), _changed("pyspark", door, ["SparkContext._ensure_initialized"])
    # and each door still does its job on a live session
    assert internals.hadoop_conf(spark).get("fs.defaultFS") is not None
    (tmp_path / "a b.wav").write_bytes(b"x")
    fs, path = internals.hadoop_fs(spark, str(tmp_path))
    assert fs.exists(path)
    listed = spark.read.format("binaryFile").load(str(tmp_path))
    files = [r["value"] for r in internals.input_files_dataframe(spark, listed).collect()]
    assert len(files) == 1 and files[0].endswith("a%20b.wav"), files
    assert internals.submitted_conf() == {}  # not under spark-submit
    assert internals.class_loadable(spark, "io.delta.sql.DeltaSparkSessionExtension")
    assert not internals.class_loadable(spark, "no.such.Class")
    assert internals.jvm_heap_used_bytes(spark) > 0
    # the query-context loggers are still the ones a failing query writes to
    import inspect

    from pyspark.errors.exceptions import base

    source = inspect.getsource(base)
    gone = [name for name in internals.QUERY_CONTEXT_LOGGERS if f'getLogger("{name}")' not in source]
    assert not gone, _changed("pyspark", door, gone)


def test_faster_whisper_internals():
    from faster_whisper.feature_extractor import FeatureExtractor
    from faster_whisper.transcribe import TranscriptionOptions, WhisperModel

    from annotators import faster_whisper_internals as fw

    door = "annotators/faster_whisper_internals.py"
    missing = [f"{module}.{name}" for module, names in fw.MODULE_NAMES.items() for name in names
               if not hasattr(importlib.import_module(module), name)]
    for method, params in fw.MODEL_METHODS.items():
        have = inspect.signature(getattr(WhisperModel, method)).parameters if hasattr(WhisperModel, method) else {}
        missing += [f"WhisperModel.{method}({p}=...)" for p in params if p not in have]
    init = inspect.getsource(WhisperModel.__init__)
    missing += [f"WhisperModel.{a}" for a in fw.MODEL_ATTRIBUTES if f"self.{a} =" not in init]
    extractor = FeatureExtractor()
    missing += [f"FeatureExtractor.{a}" for a in fw.FEATURE_EXTRACTOR_ATTRIBUTES if not hasattr(extractor, a)]
    fields = {f.name for f in dataclasses.fields(TranscriptionOptions)} if dataclasses.is_dataclass(
        TranscriptionOptions) else set(TranscriptionOptions._fields)
    if fields != set(fw.TRANSCRIPTION_OPTION_FIELDS):
        missing.append(f"TranscriptionOptions fields changed: {sorted(fields ^ set(fw.TRANSCRIPTION_OPTION_FIELDS))}")
    assert not missing, _changed("faster-whisper", door, missing)
    assert fw.silero_vad_session().get_inputs(), "the VAD model's ONNX session"


def test_speechmos_internals():
    from annotators import speechmos_internals as sm

    door = "annotators/speechmos_internals.py"
    missing = [f"speechmos/{sm.MODEL_FILES[name]}" for name in sm.MODEL_FILES if not Path(sm.model_file(name)).is_file()]
    for (module, cls, method), params in sm.METHODS.items():
        owner = getattr(importlib.import_module(module), cls, None)
        have = inspect.signature(getattr(owner, method)).parameters if owner and hasattr(owner, method) else {}
        missing += [f"{module}.{cls}.{method}({p}=...)" for p in params if p not in have]
    assert not missing, _changed("speechmos", door, missing)
    window = (np.random.default_rng(0).standard_normal(144160) * 0.1).astype("float32")
    assert sm.DnsmosFeatures().p808_melspec(window[:-160]).shape[1] == 120
    assert sm.PlcmosFeatures().stft(window).ndim == 2
