"""Annotator speed on one core: x-realtime per annotator on 60 s of real speech, and memory.

Pinned to one CPU with every library held to one thread. Each annotator is set up (models loaded),
warmed up once (numba compiles, ONNX/CTranslate2 first-run costs), then timed as the best of 3 runs.
ASR is compared with bare faster-whisper (same model, compute type and decoding options) on the same
audio, both on the same core.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from bench.report import write_section  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"  # the real-audio test corpus, in the repository
SECONDS = 60.0


def speech_60s():
    """60 s of real read speech (LJ Speech, 22.05 kHz), native and as the decoder's 16 kHz view."""
    import soundfile as sf

    from annotators.decode import to_16k_mono

    parts, total = [], 0
    for path in sorted((CORPUS / "speech" / "en").glob("LJ001-00*.wav")):
        x, rate = sf.read(path, dtype="float32")
        parts.append(x)
        total += len(x)
        if total >= SECONDS * rate:
            break
    native = np.concatenate(parts)[: int(SECONDS * rate)][:, None]
    return native, rate, to_16k_mono(native, rate)


def best_of(fn, runs=3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def loaded_libraries() -> str:
    """Which of the heavy libraries this process has imported (read from sys.modules, not assumed)."""
    heavy = ["torch", "onnxruntime", "ctranslate2", "faster_whisper", "librosa", "lingua", "sklearn"]
    return ", ".join(m for m in heavy if m in sys.modules) or "none"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    proc = psutil.Process()

    from annotators.base import AudioItem
    from annotators.decode import decode
    from annotators.registry import ANNOTATORS, build

    native, rate, samples = speech_60s()
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, native, rate, format="WAV", subtype="PCM_16")
    decode_s = best_of(lambda: decode(io.BytesIO(buf.getvalue())))

    rows, rss = [], {}
    base_rss = proc.memory_info().rss
    upstream: dict = {}
    annotators = build(list(ANNOTATORS))
    for a in annotators:
        before = proc.memory_info().rss
        a.setup(threads=1)
        item = AudioItem("bench", samples, 16000, native, rate, {"reference_text": None}, dict(upstream))
        result = a.annotate_batch([item])[0]  # warm-up
        assert result["status"] == "ok", (a.name, result)
        runs = 1 if a.name == "asr" else 3
        seconds = best_of(lambda a=a, item=item: a.annotate_batch([item]), runs)
        upstream[a.name] = result
        rss[a.name] = (proc.memory_info().rss - before) / 2**20
        rows.append((a.name, seconds))

    # bare faster-whisper, same model/options, on the same 16 kHz audio written as a WAV file
    from faster_whisper import WhisperModel

    from annotators.asr import as_int16_grid

    asr = next(a for a in annotators if a.name == "asr")
    bare = WhisperModel(asr.resolved.path, device="cpu", compute_type=asr.compute_type, cpu_threads=1)
    wav = REPO / ".deps" / "bench_60s.wav"
    sf.write(wav, as_int16_grid(samples), 16000, subtype="PCM_16")
    list(bare.transcribe(str(wav), vad_filter=False, **asr.options)[0])  # warm-up
    bare_s = best_of(lambda: list(bare.transcribe(str(wav), vad_filter=False, **asr.options)[0]), 1)
    peak = proc.memory_info().rss / 2**20

    # quality on every 9 s window (coverage 1.0) of the same audio, for the sentence below
    from annotators.quality import WINDOW_S, Quality

    full = Quality({"coverage": 1.0})
    full.setup(threads=1)
    full_item = AudioItem("bench", samples, 16000, native, rate)
    full.annotate_batch([full_item])
    full_s = best_of(lambda: full.annotate_batch([full_item]))
    n_full = full.annotate_batch([full_item])[0]["n_windows"]

    non_asr = [(n, s) for n, s in rows if n not in ("asr", "text")]
    together = sum(s for _, s in non_asr) + decode_s
    lines = [
        "## Annotators: one core, 60 s of real speech",
        "",
        f"60 s of LJ Speech (22.05 kHz, read speech), one CPU (affinity) and one thread per library; best of "
        f"3 runs after a warm-up (ASR: 1 run). Model for `asr`: {asr.resolved.name} {asr.compute_type}, "
        f"beam {asr.params['beam_size']}, word timestamps on.",
        "",
        "| stage | seconds | x realtime | memory added at setup + first run (MiB) |",
        "| --- | ---: | ---: | ---: |",
        f"| decode (WAV → native + 16 kHz view) | {decode_s:.3f} | {SECONDS / decode_s:,.0f} | – |",
    ]
    for name, s in rows:
        lines.append(f"| {name} | {s:.3f} | {SECONDS / s:,.0f} | {rss[name]:.0f} |")
    lines += [
        f"| **decode + every non-ASR signal annotator** ({', '.join(n for n, _ in non_asr)}) | {together:.3f} | "
        f"**{SECONDS / together:,.0f}** | – |",
        f"| bare faster-whisper, same model and options | {bare_s:.3f} | {SECONDS / bare_s:,.1f} | – |",
        "",
        f"`asr` vs bare faster-whisper: {bare_s / dict(rows)['asr']:.2f}x the speed. "
        f"`text` runs on the transcript only. `quality` scores evenly spaced DNSMOS windows over "
        f"{annotators[[a.name for a in annotators].index('quality')].params['coverage']:.0%} of a long file "
        f"(every {WINDOW_S} s window of this file, {n_full} windows, took {full_s:.2f} s: {SECONDS / full_s:.0f}x "
        f"realtime, {full_s / n_full:.2f} s per window with DNSMOS, P.808 and PLCMOS on one core).",
        f"Process RSS after everything was loaded: {peak:.0f} MiB (heavy libraries loaded: {loaded_libraries()}); "
        f"before: {base_rss / 2**20:.0f} MiB.",
    ]
    body = "\n".join(lines) + "\n"
    write_section(Path(args.out), "annotators", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
