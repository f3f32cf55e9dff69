"""The annotate stage against bare faster-whisper on the real English corpus, measured in one run.

(a) a bare faster-whisper loop over the files, (b) faster-whisper's BatchedInferencePipeline over the
files, (e) one single-thread loop per core side by side, (c) `voxlake annotate` with only `asr`, (d) with
every annotator. Same model, compute type, beam and decoding options as the default config; throughput
in audio seconds per wall second, start-up (model load; for voxlake the JVM and Spark too) included.
(a) and (b) use every core (cpu_threads); voxlake runs local[*] with one thread per task. Measured on the
English corpus files and on ≥ 20 minutes made of them at several gains.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.ingest_bench import timed_voxlake
from bench.report import publish, write_section

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"  # the real-audio test corpus, in the repository
CORES = len(os.sched_getaffinity(0))


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

    params = load_config(overrides={"warehouse": "unused"}).annotate.params
    asr = build(["asr"], params)[0]
    from annotators.asr import DECODE_OPTIONS

    options = {k: asr.params[k] for k in DECODE_OPTIONS}
    from annotators.models import resolve_whisper

    path = resolve_whisper(asr.params["model"], REPO / ".deps" / "models").path
    return path, asr.params["compute_type"], options


def bare_loop(files, batched: bool, threads: int = 2) -> float:
    """(a) faster-whisper's transcribe per file, or (b) its BatchedInferencePipeline per file."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    path, compute_type, options = asr_settings()
    start = time.perf_counter()
    model = WhisperModel(path, device="cpu", compute_type=compute_type, cpu_threads=threads)
    if batched:
        pipeline = BatchedInferencePipeline(model)
        opts = {k: v for k, v in options.items() if k not in ("condition_on_previous_text",)}
        for f in files:
            list(pipeline.transcribe(str(f), batch_size=8, **opts)[0])
    else:
        for f in files:
            list(model.transcribe(str(f), vad_filter=False, **options)[0])
    return time.perf_counter() - start


def side_by_side_loops(files, n: int) -> float:
    """(e) what a user with n cores writes: n single-thread loops, each over its share of the files,
    in n processes at once (model load included); the wall time is the slowest one's."""
    shares = [files[k::n] for k in range(n)]
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c",
                               "import sys, json; from bench.annotate_bench import bare_loop; "
                               "from pathlib import Path; "
                               "bare_loop([Path(p) for p in json.loads(sys.argv[1])], False, 1)",
                               json.dumps([str(f) for f in share])], cwd=REPO) for share in shares]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("a side-by-side faster-whisper loop failed")
    return time.perf_counter() - start


def voxlake(cmd: list[str]) -> tuple[float, dict]:
    wall, peak, _ = timed_voxlake(*cmd)
    return wall, peak


def gain_variants(files, out: Path, gains_db: list[float]) -> list[Path]:
    """The files as 16 kHz FLAC at each gain (clipped to full scale): more speech, same words."""
    import soundfile as sf

    from annotators.decode import DecodeLimits, decode

    made = []
    for f in files:
        with open(f, "rb") as fh:
            samples = decode(fh, DecodeLimits()).samples
        for g in gains_db:
            target = out / f"{f.stem}_{'m' if g < 0 else 'p'}{abs(g):g}dB.flac"
            sf.write(target, np.clip(samples * 10 ** (g / 20), -1.0, 1.0), 16000, subtype="PCM_16")
            made.append(target)
    return made


def jit_used() -> str:
    """How the default settings make a local driver JVM compile on this machine (jobs.spark.session)."""
    from jobs.spark.session import quick_jit_wanted

    return "C1 only" if quick_jit_wanted("auto") else "the full JIT"


def measure(files: list[Path], work: Path, label: str) -> dict:
    src = work / label
    src.mkdir(exist_ok=True)  # the gain variants are written there already
    for f in files:
        if f.parent != src:
            shutil.copy(f, src / f.name)
    local = sorted(src.iterdir())
    out = {"files": len(local), "audio_s": audio_seconds(local)}
    wall = {"a": bare_loop(local, batched=False), "b": bare_loop(local, batched=True),
            "e": side_by_side_loops(local, CORES)}
    peaks = {}
    for key, names in (("c", ["asr"]), ("d", None)):
        wh = work / f"wh_{label}_{key}"
        cfg = work / f"{label}_{key}.yaml"
        cfg.write_text(yaml.safe_dump({"annotate": {"annotators": names}} if names else {}))
        voxlake(["ingest", "--source", str(src), "--warehouse", str(wh)])
        wall[key], peaks[key] = voxlake(["annotate", "--warehouse", str(wh), "--config", str(cfg)])
    out["wall"], out["peaks"] = wall, peaks
    out["tput"] = {k: out["audio_s"] / v for k, v in wall.items()}
    return out


def table(m: dict, title: str) -> list[str]:
    t, w = m["tput"], m["wall"]
    best = max(t["a"], t["b"])
    return [
        f"**{title}**: {m['files']} files, {m['audio_s'] / 60:.1f} min of audio.",
        "",
        "| | what | wall s | audio s / wall s |",
        "| --- | --- | ---: | ---: |",
        f"| (a) | bare faster-whisper loop, cpu_threads={CORES} | {w['a']:.1f} | {t['a']:.2f} |",
        f"| (b) | BatchedInferencePipeline (batch 8) per file, cpu_threads={CORES} | {w['b']:.1f} | {t['b']:.2f} |",
        f"| (e) | {CORES} single-thread faster-whisper loops side by side | {w['e']:.1f} | {t['e']:.2f} |",
        f"| (c) | `voxlake annotate`, asr only | {w['c']:.1f} | {t['c']:.2f} |",
        f"| (d) | `voxlake annotate`, every annotator | {w['d']:.1f} | {t['d']:.2f} |",
        "",
        f"(c) / best of (a), (b): **{t['c'] / best:.2f}x** (goal 1.3x); (c) / (e): {t['c'] / t['e']:.2f}x. "
        f"(d) / (a): **{t['d'] / t['a']:.2f}x** (goal 1.0x); (d) / (e): {t['d'] / t['e']:.2f}x.",
        f"Peak RSS of the largest Python worker: (c) {m['peaks']['c']['python_worker_max'] / 2**20:.0f} MiB, "
        f"(d) **{m['peaks']['d']['python_worker_max'] / 2**20:.0f} MiB** (goal 1,536 MiB); all Python workers "
        f"together (c) {m['peaks']['c']['python_workers'] / 2**20:.0f} MiB, (d) "
        f"{m['peaks']['d']['python_workers'] / 2**20:.0f} MiB; JVM (c) {m['peaks']['c']['jvm'] / 2**20:.0f} MiB, "
        f"(d) {m['peaks']['d']['jvm'] / 2**20:.0f} MiB.",
        "",
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--gains", default="0,-6,-12,3", help="dB variants for the long set")
    ap.add_argument("--corpus-set-only", action="store_true",
                    help="only the 46-file set (about 8 minutes instead of 40), in a section of its own")
    args = ap.parse_args(argv)
    from udfs.device import cuda_device_count

    files = english_files()
    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-annotate-"))
    try:
        small = measure(files, work, "corpus")
        print("\n".join(table(small, "The corpus set")), flush=True)
        if args.corpus_set_only:
            _, compute_type, options = asr_settings()
            publish(Path(args.out), "annotate_corpus", [
                "## Annotate stage vs bare faster-whisper: the corpus set alone (one run)",
                "",
                f"As in the section above (model base, {compute_type}, beam {options['beam_size']}, start-up "
                f"included, voxlake local[*] with {CORES} tasks at once, its driver JVM with {jit_used()}), "
                "the 46-file set only "
                "(`python -m bench.annotate_bench --corpus-set-only`).",
                "",
                *table(small, "The corpus set"),
                f"CUDA devices visible to this run: {cuda_device_count()}.",
            ])
            return 0
        variants = work / "variants"
        variants.mkdir()
        gains = [float(g) for g in args.gains.split(",")]
        large = measure(gain_variants(files, variants, gains), work, "variants")
        _, compute_type, options = asr_settings()
        gpus = cuda_device_count()
        body = "\n".join([
            "## Annotate stage vs bare faster-whisper (one run)",
            "",
            f"English corpus files (mostly 2-12 s clips), then the same files as 16 kHz FLAC at "
            f"{', '.join(f'{g:+g}' for g in gains)} dB. Model base, {compute_type}, beam {options['beam_size']}, "
            f"word timestamps, temperature fallback; start-up included (model load; for voxlake also the JVM, "
            f"Spark and Delta). voxlake runs local[*]: {CORES} tasks at once, one thread each; its driver JVM "
            f"compiled with {jit_used()} (`spark.quick_jit: auto`, the default, on {os.cpu_count()} cores).",
            "",
            *table(small, "The corpus set"),
            *table(large, "The long set"),
            (f"CUDA devices visible to this run: {gpus}; the GPU figures are in the GPU section." if gpus else
             "CUDA devices visible to this run: 0, so every figure here is CPU only."),
        ]) + "\n"
        write_section(Path(args.out), "annotate", body)
        print(body)
        print(json.dumps({"small": small["wall"], "large": large["wall"]}), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
