"""The annotate stage against bare faster-whisper on the real English corpus, measured in one run.

(a) a bare faster-whisper loop over the files, (b) faster-whisper's BatchedInferencePipeline over the
files, (c) `voxlake annotate` with only `asr`, (d) with every annotator. Same model, compute type, beam
and decoding options as the default config; throughput in audio seconds per wall second, start-up
(model load; for voxlake the JVM and Spark too) included. (a) and (b) use both cores (cpu_threads=2);
voxlake runs local[*] with one thread per task.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.ingest_bench import PeakRss
from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"


def english_files() -> list[Path]:
    import csv

    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [CORPUS / r["path"] for r in rows if r["kind"] == "speech" and r["language"] == "en"]


def audio_seconds(files) -> float:
    import soundfile as sf

    return sum(sf.info(str(f)).duration for f in files)


def asr_settings():
    from annotators.registry import build
    from jobs.config import load_config

    params = load_config(overrides={"warehouse": "unused"}).section("annotate")["params"]
    asr = build(["asr"], params)[0]
    from annotators.asr import DECODE_OPTIONS

    options = {k: asr.params[k] for k in DECODE_OPTIONS}
    from annotators.models import resolve_whisper

    path = resolve_whisper(asr.params["model"], REPO / ".deps" / "models").path
    return path, asr.params["compute_type"], options


def bare_loop(files, batched: bool) -> float:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    path, compute_type, options = asr_settings()
    start = time.perf_counter()
    model = WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=2)
    if batched:
        pipeline = BatchedInferencePipeline(model)
        opts = {k: v for k, v in options.items() if k not in ("condition_on_previous_text",)}
        for f in files:
            list(pipeline.transcribe(str(f), batch_size=8, **opts)[0])
    else:
        for f in files:
            list(model.transcribe(str(f), vad_filter=False, **options)[0])
    return time.perf_counter() - start


def voxlake(cmd: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", *cmd], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    mon = PeakRss(proc.pid)
    out, err = proc.communicate()
    mon.stop()
    if proc.returncode != 0:
        raise SystemExit(f"voxlake {cmd[0]} failed:\n{err[-3000:]}")
    return time.perf_counter() - start, mon.peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    files = english_files()
    total = audio_seconds(files)
    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-annotate-"))
    try:
        src = work / "en"
        src.mkdir()
        for f in files:
            shutil.copy(f, src / f.name)
        results = {}
        results["a"] = bare_loop(files, batched=False)
        results["b"] = bare_loop(files, batched=True)
        peaks = {}
        for key, names in (("c", ["asr"]), ("d", None)):
            wh = work / f"wh_{key}"
            cfg = work / f"{key}.yaml"
            cfg.write_text(yaml.safe_dump({"annotate": {"annotators": names}} if names else {}))
            voxlake(["ingest", "--source", str(src), "--warehouse", str(wh)])
            results[key], peaks[key] = voxlake(["annotate", "--warehouse", str(wh), "--config", str(cfg)])
        _, compute_type, options = asr_settings()
        tput = {k: total / v for k, v in results.items()}
        best = max(tput["a"], tput["b"])
        body = "\n".join([
            "## Annotate stage vs bare faster-whisper (one run)",
            "",
            f"{len(files)} English corpus files, {total:.0f} s of audio (mostly 2-12 s clips). Model base, "
            f"{compute_type}, beam {options['beam_size']}, word timestamps, temperature fallback; start-up "
            "included (model load; for voxlake also the JVM, Spark and Delta).",
            "",
            "| | what | wall s | audio s / wall s |",
            "| --- | --- | ---: | ---: |",
            f"| (a) | bare faster-whisper loop, cpu_threads=2 | {results['a']:.1f} | {tput['a']:.2f} |",
            f"| (b) | BatchedInferencePipeline (batch 8) per file, cpu_threads=2 | {results['b']:.1f} | {tput['b']:.2f} |",
            f"| (c) | `voxlake annotate`, asr only | {results['c']:.1f} | {tput['c']:.2f} |",
            f"| (d) | `voxlake annotate`, every annotator | {results['d']:.1f} | {tput['d']:.2f} |",
            "",
            f"(c) / best of (a), (b): **{tput['c'] / best:.2f}x** (target 0.9x). "
            f"(d) / (c): **{tput['d'] / tput['c']:.2f}x** (target 0.7x).",
            f"Peak resident memory of the Python workers together: (c) {peaks['c']['python_workers'] / 2**20:.0f} MiB, "
            f"(d) {peaks['d']['python_workers'] / 2**20:.0f} MiB (two workers in local[2]); JVM (c) "
            f"{peaks['c']['jvm'] / 2**20:.0f} MiB, (d) {peaks['d']['jvm'] / 2**20:.0f} MiB.",
            "",
            "No GPU was lent to this session, so there is no GPU figure yet.",
        ]) + "\n"
        write_section(Path(args.out), "annotate", body)
        print(body)
        print(json.dumps(results), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
