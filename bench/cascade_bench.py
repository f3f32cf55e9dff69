"""The cascade: curated hours per second with it (shipped) and without (`annotate.cascade: false`).

An archive-like set built from the corpus, in which about half of the audio cannot be curated, as in raw
web crawls:
- could be curated: the English corpus speech not used below, the other languages, the multi-speaker
  recordings, and two long-form recordings (tests/longform.py, as in the clips bench);
- cannot: telephone-band noisy copies of other English speech (8 kHz, 300-1800 Hz, noise at 10 dB SNR),
  the corpus's non-speech (a music medley of its three music files, birdsong, a whale, noise), synthetic
  noise and near-silence, and snippets of speech shorter than a clip may be.
`voxlake run` (shipped settings, every annotator) into two fresh warehouses, one with the cascade and one
without, alternating, two rounds; the figures: curated audio (gold.clips), the annotate stage's seconds and each
annotator's (ops.runs.stage_seconds), the command's wall time (start-up included), and whether the two
runs curated the same clips.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from bench.clips_bench import SETS, delta_rows, stage_seconds
from bench.ingest_bench import timed_voxlake
from bench.report import cpu_model, write_section

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import longform  # noqa: E402  (the long-form builder the tests use)

SR = 16000
TELEPHONE_EVERY = 3  # every third English corpus recording becomes a telephone-band copy (and not wideband)
SYNTHETIC = {"noise": 8, "quiet": 4}  # synthetic recordings of 25 s each
SNIPPETS = 20  # speech snippets of 0.5-0.9 s


def load_mono(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return x.mean(axis=1), sr


def build_archive(dest: Path) -> dict[str, float]:
    """Write the set into `dest`; seconds of audio by kind."""
    import soundfile as sf
    from scipy.signal import butter, resample_poly, sosfiltfilt

    rng = np.random.default_rng(20261207)
    meta = longform.manifest()
    corpus = longform.CORPUS
    seconds: dict[str, float] = {}

    def put(kind: str, name: str, x: np.ndarray, sr: int) -> None:
        (dest / kind).mkdir(parents=True, exist_ok=True)
        sf.write(dest / kind / name, x.astype(np.float32), sr)
        seconds[kind] = seconds.get(kind, 0.0) + len(x) / sr

    for kind in ("speech", "other", "long"):
        (dest / kind).mkdir(parents=True, exist_ok=True)
    english = sorted(p for p, m in meta.items() if m["kind"] == "speech" and m["language"] == "en")
    band = butter(6, [300, 1800], btype="bandpass", fs=8000, output="sos")
    for k, rel in enumerate(english):
        if k % TELEPHONE_EVERY:
            shutil.copyfile(corpus / rel, dest / "speech" / Path(rel).name)
            seconds["speech"] = seconds.get("speech", 0.0) + float(meta[rel]["duration_s"])
            continue
        x, sr = load_mono(corpus / rel)
        y = sosfiltfilt(band, resample_poly(x, 8000, sr))
        noise = rng.standard_normal(len(y)) * np.sqrt(np.mean(y ** 2) / 10 ** (10 / 10))
        put("telephone", Path(rel).stem + ".wav", np.clip(y + noise, -1, 1), 8000)
    for rel, m in meta.items():
        if m["kind"] == "multispeaker" or (m["kind"] == "speech" and m["language"] != "en"):
            shutil.copyfile(corpus / rel, dest / "other" / Path(rel).name)
            seconds["other"] = seconds.get("other", 0.0) + float(m["duration_s"])
    for name, opts in SETS:
        pieces = longform.build(dest / "long" / name, **opts)
        seconds["long"] = seconds.get("long", 0.0) + pieces[-1].end_s
    medley = np.concatenate([longform.load(rel) for rel in longform.MUSIC])
    put("nonspeech", "music_medley.wav", medley, SR)
    for rel, m in meta.items():
        if m["kind"] == "nonspeech" and rel not in longform.MUSIC:
            x, sr = load_mono(corpus / rel)
            put("nonspeech", Path(rel).stem + ".wav", x, sr)
    for k in range(SYNTHETIC["noise"]):
        white = rng.standard_normal(25 * SR)
        noise = np.cumsum(white) if k % 2 else white  # white, and brown every other one
        put("noise", f"noise_{k}.wav", noise / np.max(np.abs(noise)) * 0.3, SR)
    for k in range(SYNTHETIC["quiet"]):
        put("quiet", f"quiet_{k}.wav", rng.standard_normal(25 * SR) * 10 ** (-70 / 20), SR)
    for k in range(SNIPPETS):
        rel = english[k % len(english)]
        x, sr = load_mono(corpus / rel)
        length = int(rng.uniform(0.5, 0.9) * sr)
        start = int(rng.uniform(0.3, 0.6) * max(0, len(x) - length))
        put("snippet", f"snippet_{k}.wav", x[start:start + length], sr)
    return seconds


def curated(wh: Path) -> tuple[float, dict[str, tuple]]:
    """(seconds in gold.clips, clip_id -> (text, start, end))."""
    clips = delta_rows(wh / "gold" / "clips")
    return (sum(c["duration_s"] for c in clips),
            {c["clip_id"]: (c["text"], c["start_s"], c["end_s"]) for c in clips})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--rounds", type=int, default=2)  # one run of each varied by 10-20 s here
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-cascade-"))
    try:
        src = work / "archive"
        kinds = build_archive(src)
        total = sum(kinds.values())
        off_cfg = work / "off.yaml"
        off_cfg.write_text(yaml.safe_dump({"annotate": {"cascade": False}}))
        runs = {"on": [], "off": []}
        for k in range(args.rounds):
            for mode in ("off", "on"):
                wh = work / f"wh_{mode}{k}"
                extra = ("--config", str(off_cfg)) if mode == "off" else ()
                wall = timed_voxlake("run", "--source", str(src), "--warehouse", str(wh), *extra)[0]
                stages = stage_seconds(wh)[0]
                curated_s, clips = curated(wh)
                runs[mode].append({"wall": wall, "annotate": stages["annotate"], "curated_s": curated_s,
                                   "clips": clips, "stages": stages})
                print(f"{mode}: wall {wall:.1f} s, annotate {stages['annotate']:.1f} s, "
                      f"curated {curated_s:.1f} s", file=sys.stderr)
        on, off = runs["on"], runs["off"]
        same_ids = all(set(a["clips"]) == set(b["clips"]) for a, b in zip(on, off, strict=True))
        differing = sum(1 for a, b in zip(on, off, strict=True) for c in set(a["clips"]) & set(b["clips"])
                        if a["clips"][c] != b["clips"][c])

        def mean(rows, key):
            return sum(r[key] for r in rows) / len(rows)

        per_annotate = {m: mean(r, "curated_s") / 3600 / mean(r, "annotate") for m, r in runs.items()}
        per_wall = {m: mean(r, "curated_s") / 3600 / mean(r, "wall") for m, r in runs.items()}
        names = sorted({n.split(".", 1)[1] for r in on + off for n in r["stages"] if n.startswith("annotate.")})
        lines = [
            "## The cascade: curated hours per second",
            "",
            f"`python -m bench.cascade_bench` on this machine ({cpu_model()}). An archive-like set of {total / 60:.1f} min built "
            "from the corpus (bench/cascade_bench.py): "
            + ", ".join(f"{k} {v / 60:.1f} min" for k, v in kinds.items())
            + ". `voxlake run` with the shipped settings (every annotator) into fresh warehouses, with the cascade "
            f"(shipped) and with `annotate.cascade: false`, alternating, {args.rounds} round(s); start-up included.",
            "",
            "| | cascade off | cascade on | on / off |",
            "|---|---|---|---|",
            f"| curated (gold.clips), s | {mean(off, 'curated_s'):.1f} | {mean(on, 'curated_s'):.1f} | "
            f"{mean(on, 'curated_s') / max(1e-9, mean(off, 'curated_s')):.3f} |",
            f"| annotate stage, s | {mean(off, 'annotate'):.1f} | {mean(on, 'annotate'):.1f} | "
            f"{mean(on, 'annotate') / mean(off, 'annotate'):.2f} |",
            f"| whole run (wall), s | {mean(off, 'wall'):.1f} | {mean(on, 'wall'):.1f} | "
            f"{mean(on, 'wall') / mean(off, 'wall'):.2f} |",
            f"| **curated hours per second of annotate** | {per_annotate['off']:.2e} | {per_annotate['on']:.2e} | "
            f"**{per_annotate['on'] / per_annotate['off']:.2f}x** (goal ≥ 2x) |",
            f"| **curated hours per second of the run** | {per_wall['off']:.2e} | {per_wall['on']:.2e} | "
            f"**{per_wall['on'] / per_wall['off']:.2f}x** (goal ≥ 1.5x) |",
        ]
        for n in names:
            a = sum(r["stages"].get(f"annotate.{n}", 0.0) for r in off) / len(off)
            b = sum(r["stages"].get(f"annotate.{n}", 0.0) for r in on) / len(on)
            lines.append(f"| annotate.{n}, s | {a:.1f} | {b:.1f} | {b / a:.2f} |" if a else
                         f"| annotate.{n}, s | {a:.1f} | {b:.1f} | – |")
        lines += ["", "The per-annotator rows are summed over the Spark tasks, which run side by side on the "
                  "cores, so they can add up to more than the stage's seconds.",
                  "", f"Same curated clips (clip ids) in both runs: {'yes' if same_ids else 'no'}; clips whose "
                  f"text or bounds differ: {differing}. Per run: "
                  + "; ".join(f"{m} {k + 1}: wall {r['wall']:.1f} s, annotate {r['annotate']:.1f} s"
                              for m in ("off", "on") for k, r in enumerate(runs[m])) + "."]
        write_section(Path(args.out), "cascade", "\n".join(lines))
        print("\n".join(lines))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
