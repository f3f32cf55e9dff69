"""Training clips from long recordings: what reaches gold.clips of a long-form set built from the corpus.

The set (tests/longform.py): two recordings in which one main reader (LJ Speech) reads her utterances in
passages, with music, noise, silence and other voices (LibriSpeech, JFK, TIMIT, speechbrain) between
them, every piece's placement known. `voxlake run` (the shipped settings, `max_speakers: 1`) curates
them; the figures compare gold.clips with the truth:

- clip lengths within [clips.min_s, clips.max_s];
- clip boundaries inside a reference word (pocketsphinx's forced alignment of each piece against its
  transcript; an edge closer than TOLERANCE_S to a word's edge counts as outside it);
- WER of the gold clips' texts in time order against the reference words they cover (a reference word is
  covered when its aligned midpoint lies in a gold clip), next to the whole-file WER: faster-whisper with
  the same model and decoding options over the whole recording, VAD on, against every reference;
- music or noise inside a gold clip; speaker purity of each gold clip against the placement;
- the share of the speech (main reader, and every voice) that reaches gold.clips.

Cost: the same set through `voxlake run` into fresh warehouses, with every annotator but clips and with
all of them, COST_ROUNDS times each, alternating; the annotate stage's seconds (ops.runs) side by side,
and the clips annotator's share of the seconds the annotators spent (ops.runs.stage_seconds,
`annotate.<name>`).

Short files: the English corpus set curated by this code and by the code before clips (a git worktree at
BASELINE_REF), the same recipe otherwise.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from bench.ingest_bench import timed_voxlake
from bench.report import write_section

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import longform  # noqa: E402  (the long-form builder the tests use)

TOLERANCE_S = 0.05
COST_ROUNDS = 2
BASELINE_REF = "bf56246"  # the last commit before clips: files were the unit of curation
# two recordings with the main reader's utterances split between them (the same utterances in both would make
# `link` call them near-duplicates) and their inserts drawn from different places of the corpus's lists
SETS = [("long_a.wav", {"seed": 7, "limit": 17}),
        ("long_b.wav", {"seed": 11, "first": 17, "first_insert": 3, "passage": (2, 3),
                        "inserts": ("other", "noise", "music", "silence", "other")})]


def delta_rows(path: Path) -> list[dict]:
    from deltalake import DeltaTable

    return DeltaTable(str(path)).to_pyarrow_table().to_pylist()


def overlap(a0, a1, b0, b1) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def whole_file_text(path: Path, model_path: str) -> str:
    """faster-whisper over the whole recording: voxlake's asr model and decoding options, VAD on."""
    from faster_whisper import WhisperModel

    from annotators.asr import DECODE_OPTIONS, Asr

    params = Asr.default_params
    model = WhisperModel(model_path, device="cpu", compute_type=params["compute_type"], cpu_threads=2)
    segments, _ = model.transcribe(str(path), vad_filter=True, **{k: params[k] for k in DECODE_OPTIONS})
    return " ".join(s.text.strip() for s in segments)


def wer(reference: str, hypothesis: str) -> float:
    from annotators.text import error_rates

    return error_rates(reference, hypothesis, "en")[0]


def pooled_wer(pairs: list[tuple[str, str]]) -> float:
    """Word errors over all pairs / reference words over all pairs (jiwer, Whisper's English normaliser)."""
    import jiwer

    from annotators.text import wer_normalize

    refs = [wer_normalize(r, "en") for r, _ in pairs]
    hyps = [wer_normalize(h, "en") for _, h in pairs]
    return float(jiwer.wer(refs, hyps))


def stage_seconds(wh: Path) -> list[dict]:
    runs = sorted(delta_rows(wh / "ops" / "runs"), key=lambda r: r["started_at"])
    return [dict(r["stage_seconds"]) for r in runs]


def english_corpus(dest: Path) -> Path:
    """The corpus's English speech files, as the corpus tests ingest them (one folder)."""
    src = dest / "en"
    shutil.copytree(longform.CORPUS / "speech" / "en", src)
    return src


def curated_short(python: str, cwd: Path, src: Path, wh: Path, env_path: Path) -> set[str]:
    """The file names `voxlake run` curates from `src`, with the code at `cwd`."""
    import os

    env = {**os.environ, "PYTHONPATH": str(env_path)}
    subprocess.run([python, "-m", "jobs.cli", "run", "--source", str(src), "--warehouse", str(wh)],
                   cwd=cwd, env=env, check=True, capture_output=True, text=True)
    state = delta_rows(wh / "ops" / "file_state")
    return {r["uri"].rsplit("/", 1)[1] for r in state if r["status"] == "curated"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--skip-baseline", action="store_true", help="leave out the short-file comparison")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="voxlake-bench-clips-"))
    try:
        src = work / "long"
        placements = {}
        for name, opts in SETS:
            placements[name] = longform.build(src / name, **opts)
        total_s = sum(p[-1].end_s for p in placements.values())
        wh = work / "wh"
        from jobs.config import load_config

        every = list(load_config(overrides={"warehouse": "unused"}).annotate.annotators)
        base_cfg, clip_cfg = work / "no_clips.yaml", work / "clips.yaml"
        recipe = {"publish": {"recipe": {"max_speakers": 1}}}
        base_cfg.write_text(yaml.safe_dump({**recipe, "annotate": {"annotators": [n for n in every if n != "clips"]}}))
        clip_cfg.write_text(yaml.safe_dump(recipe))
        # fresh runs of each, alternating (a single run's stage time varies by several seconds here); every file
        # fails clips_measured without the clips annotator: the critical suite blocks that batch (exit 1)
        base_annotate, clip_annotate, walls, spent = [], [], [], {}
        for k in range(COST_ROUNDS):
            base_wh, clip_wh = work / f"wh_base{k}", (wh if k == 0 else work / f"wh{k}")
            walls.append(timed_voxlake("run", "--source", str(src), "--warehouse", str(base_wh),
                                       "--config", str(base_cfg), ok_codes=(0, 1))[0])
            walls.append(timed_voxlake("run", "--source", str(src), "--warehouse", str(clip_wh),
                                       "--config", str(clip_cfg))[0])
            base_annotate.append(stage_seconds(base_wh)[0]["annotate"])
            seconds = stage_seconds(clip_wh)[0]
            clip_annotate.append(seconds["annotate"])
            for name, v in seconds.items():
                if name.startswith("annotate."):
                    spent[name.split(".", 1)[1]] = spent.get(name.split(".", 1)[1], 0.0) + v / COST_ROUNDS
        clip_share = spent.get("clips", 0.0) / max(1e-9, sum(spent.values()))
        added = sum(clip_annotate) / sum(base_annotate) - 1

        rules = load_config(overrides={"warehouse": "unused"}).clips
        gold = {r["audio_id"]: r for r in delta_rows(wh / "gold" / "utterances")}
        clips = delta_rows(wh / "gold" / "clips")
        states = delta_rows(wh / "ops" / "clip_state")
        from annotators.decode import decode
        from annotators.models import resolve_whisper

        model = resolve_whisper("base", str(REPO / ".deps" / "models"), allow_download=False).path
        pooled = {"clips": [], "whole": []}  # (reference, hypothesis) per recording, for the set's WER
        per_file, totals = [], {"clips": 0, "in_bounds": 0, "cut_words": 0, "edges": 0, "leaky": 0, "impure": 0,
                                "main_s": 0.0, "main_in": 0.0, "speech_s": 0.0, "speech_in": 0.0,
                                "worst_leak": 0.0, "worst_purity": 1.0}
        for name, pieces in placements.items():
            mine = sorted((c for c in clips if gold[c["audio_id"]]["uri"].endswith("/" + name)),
                          key=lambda c: c["start_s"])
            candidates = [s for s in states if mine and s["audio_id"] == mine[0]["audio_id"]]
            with open(src / name, "rb") as f:
                samples = decode(f).samples
            words = longform.reference_words(samples, pieces)
            timeline = longform.reference_timeline(samples, pieces)
            for c in mine:
                totals["clips"] += 1
                totals["in_bounds"] += rules.min_s <= c["duration_s"] <= rules.max_s
                for edge in (c["start_s"], c["end_s"]):
                    totals["edges"] += 1
                    totals["cut_words"] += any(a + TOLERANCE_S < edge < b - TOLERANCE_S for a, b, _ in words)
                leak = sum(overlap(p.start_s, p.end_s, c["start_s"], c["end_s"]) for p in pieces
                           if p.kind in ("music", "noise"))
                totals["leaky"] += leak > 1.0
                totals["worst_leak"] = max(totals["worst_leak"], leak)
                voices: dict[str, float] = {}
                for p in pieces:
                    if p.kind in ("main", "other"):
                        key = "main" if p.kind == "main" else p.source
                        voices[key] = voices.get(key, 0.0) + overlap(p.start_s, p.end_s, c["start_s"], c["end_s"])
                purity = max(voices.values()) / sum(voices.values()) if sum(voices.values()) else 1.0
                totals["impure"] += purity < 0.95
                totals["worst_purity"] = min(totals["worst_purity"], purity)
            for p in pieces:
                if p.kind in ("main", "other"):
                    covered = sum(overlap(p.start_s, p.end_s, c["start_s"], c["end_s"]) for c in mine)
                    totals["speech_s"] += p.end_s - p.start_s
                    totals["speech_in"] += covered
                    if p.kind == "main":
                        totals["main_s"] += p.end_s - p.start_s
                        totals["main_in"] += covered
            covered = [w for t, w in timeline if any(c["start_s"] <= t < c["end_s"] for c in mine)]
            clip_pair = (" ".join(covered), " ".join(c["text"] for c in mine))
            whole_pair = (" ".join(w for _, w in timeline), whole_file_text(src / name, model))
            clip_wer = wer(*clip_pair) if covered else None
            whole_wer = wer(*whole_pair)
            pooled["clips"].append(clip_pair)
            pooled["whole"].append(whole_pair)
            per_file.append((name, pieces[-1].end_s, len(candidates), len(mine), sum(c["duration_s"] for c in mine),
                             clip_wer, whole_wer))

        short = None
        if not args.skip_baseline:
            base_tree = work / "baseline"
            subprocess.run(["git", "worktree", "add", "-q", "--detach", str(base_tree), BASELINE_REF], cwd=REPO,
                           check=True)
            try:
                for link in (".venv", ".deps"):
                    (base_tree / link).symlink_to(REPO / link)
                en = english_corpus(work)
                now = curated_short(sys.executable, REPO, en, work / "wh_now", REPO)
                before = curated_short(sys.executable, base_tree, en, work / "wh_before", base_tree)
                short = (len(list(en.iterdir())), before, now)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO, check=False)

        lines = ["## Training clips: a long-form set through `voxlake run`", "",
                 f"Two recordings built from the corpus (tests/longform.py; {total_s / 60:.1f} min in all): one "
                 "main reader (LJ Speech: half of her utterances in each) in passages, with music, noise, silence and other voices (LibriSpeech, "
                 "JFK, TIMIT, speechbrain) between them. `voxlake run` with the shipped settings and "
                 "`max_speakers: 1`; every figure is checked against the known placement. Reference word "
                 f"edges: pocketsphinx's forced alignment (an edge within {TOLERANCE_S * 1000:.0f} ms of a word's "
                 "edge counts as outside it). Whole-file WER: faster-whisper over the whole recording, the same "
                 "model (base, int8) and decoding options as voxlake's asr, VAD on, against every reference; "
                 "clip WER: the gold clips' texts in time order against the reference words whose aligned "
                 "midpoint lies in a gold clip (Whisper's normaliser for both).", "",
                 "| recording | minutes | candidate clips | gold clips | gold seconds | clip WER | whole-file WER |",
                 "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, dur, cand, n, secs, cw, ww in per_file:
            lines.append(f"| {name} | {dur / 60:.1f} | {cand} | {n} | {secs:.0f} | "
                         f"{'n/a' if cw is None else f'{cw:.1%}'} | {ww:.1%} |")
        t = totals
        n = max(1, t["clips"])
        lines += ["", "| goal | measured | target |", "| --- | ---: | --- |",
                  f"| gold clips within [{rules.min_s:g}, {rules.max_s:g}] s | {t['in_bounds'] / n:.1%} | ≥ 95 % |",
                  f"| clip edges inside a reference word | {t['cut_words']} of {t['edges']} | 0 |",
                  f"| gold clips holding > 1 s of music or noise | {t['leaky']} (most: {t['worst_leak']:.2f} s) | 0 |",
                  f"| gold clips under 0.95 purity (placement) | {t['impure']} (lowest: {t['worst_purity']:.3f}) | 0 |",
                  f"| main reader's speech in gold.clips | {t['main_in'] / t['main_s']:.1%} "
                  f"({t['main_in']:.0f} of {t['main_s']:.0f} s) | ≥ 80 % of the clean speech |",
                  f"| every voice's speech in gold.clips | {t['speech_in'] / t['speech_s']:.1%} "
                  f"({t['speech_in']:.0f} of {t['speech_s']:.0f} s) | |"]
        set_clips, set_whole = pooled_wer(pooled["clips"]), pooled_wer(pooled["whole"])
        lines.append(f"| the set's clip WER − whole-file WER ({set_clips:.1%} − {set_whole:.1%}) | "
                     f"{(set_clips - set_whole) * 100:+.1f} points | ≤ +1 point |")
        for name, _, _, _, _, cw, ww in per_file:
            if cw is not None:
                lines.append(f"| {name}: clip WER − whole-file WER | {(cw - ww) * 100:+.1f} points | |")
        def listed(values):
            return ", ".join(f"{v:.1f}" for v in values)

        lines += ["", f"Cost ({COST_ROUNDS} fresh runs of the set without the clips annotator and {COST_ROUNDS} "
                  f"with it, alternating): the annotate stage took {listed(base_annotate)} s without it and "
                  f"{listed(clip_annotate)} s with it ({added:+.1%} in all; goal: at most +25 %). The clips "
                  f"annotator spent {spent.get('clips', 0.0):.1f} s of the {sum(spent.values()):.1f} s the "
                  f"annotators spent per run ({clip_share:.1%}; the two tasks run side by side). Whole runs: "
                  f"{listed(walls[0::2])} s and {listed(walls[1::2])} s."]
        if short is not None:
            files, before, now = short
            lines += ["", f"Short files: the corpus's {files} English files through `voxlake run` (shipped settings):"
                      f" {len(before)} curated by the code before clips ({BASELINE_REF}), {len(now)} now; "
                      f"curated only before: {', '.join(sorted(before - now)) or 'none'}; only now: "
                      f"{', '.join(sorted(now - before)) or 'none'}."]
        write_section(Path(args.out), "clips", "\n".join(lines))
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
