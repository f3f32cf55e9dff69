"""The `speakers` annotator on the corpus's real recordings: speaker counts and turn purity.

Counts: the four multi-speaker recordings (2, 3, 2 and 2 speakers: RTTM files, the Picovoice speaker
list, the stereo clip's two channels) and every single-speaker speech file (1). Turn purity, on the two
recordings with an RTTM: the share of the predicted turns' duration that overlaps the reference speaker
most present in each turn (time with no reference speaker is left out). The embeddings are computed
once; the clustering is redone for each threshold, so the sweep shows why the default was chosen.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")

from bench.report import publish  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"  # the real-audio test corpus, in the repository
TRUE_COUNTS = {"multispeaker/pyannote_sample.wav": 2, "multispeaker/pyannote_ami_dev00.wav": 2,
               "multispeaker/picovoice_diarization_test.wav": 3, "multispeaker/faster_whisper_stereo_diarization.wav": 2}
THRESHOLDS = [0.25, 0.28, 0.31, 0.34, 0.37, 0.4]


def rttm(path: Path) -> list[tuple[float, float, str]]:
    out = []
    for line in path.read_text().splitlines():
        f = line.split()
        out.append((float(f[3]), float(f[3]) + float(f[4]), f[7]))
    return out


def purity(turns: list[dict], ref: list[tuple[float, float, str]]) -> tuple[float, float]:
    """(matched seconds, seconds with any reference speaker) over the predicted turns."""
    matched = total = 0.0
    for t in turns:
        by_speaker: dict[str, float] = {}
        for s, e, who in ref:
            overlap = min(e, t["end_s"]) - max(s, t["start_s"])
            if overlap > 0:
                by_speaker[who] = by_speaker.get(who, 0.0) + overlap
        if by_speaker:
            matched += max(by_speaker.values())
            total += sum(by_speaker.values())
    return matched, total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from annotators.base import AudioItem
    from annotators.decode import decode
    from annotators.registry import build
    from annotators.speakers import cluster_windows, turns_from_labels

    vad, speakers = build(["vad", "speakers"])
    vad.setup(threads=1)
    speakers.setup(threads=1)
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    truth = {r["path"]: 1 for r in rows if r["kind"] == "speech"}
    truth.update(TRUE_COUNTS)
    windows, audio_s, embed_s = {}, 0.0, 0.0
    for path in truth:
        with open(CORPUS / path, "rb") as fh:
            x = decode(fh).samples
        item = AudioItem(path, x, 16000)
        segments = vad.annotate(item)["speech_segments"]
        t = time.perf_counter()
        windows[path] = speakers.window_embeddings(x, segments)
        embed_s += time.perf_counter() - t
        audio_s += len(x) / 16000
    lines = [
        "## speakers: speaker counts and turn purity on the corpus",
        "",
        f"Window embeddings of {len(truth)} corpus files ({audio_s / 60:.1f} min) computed once on one core "
        f"({audio_s / embed_s:.0f}x realtime for the VAD-selected windows at rate {speakers.params['rate']}/s); "
        f"then clustered at each threshold (`min_speaker_share` {speakers.params['min_speaker_share']}). "
        f"Multi-speaker truth: {', '.join(f'{Path(p).stem} {n}' for p, n in TRUE_COUNTS.items())}; "
        "single-speaker: every `speech/` file.",
        "",
        "| threshold | multi-speaker counts right | single-speaker counts right | turn purity (pyannote_sample, ami_dev00) |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for thr in THRESHOLDS:
        multi_ok = single_ok = 0
        matched = total = 0.0
        for path, n_true in truth.items():
            embeds, centers, step = windows[path]
            labels = cluster_windows(embeds, thr, speakers.params["min_speaker_share"])
            n = int(labels.max()) + 1 if len(labels) else 0
            if path in TRUE_COUNTS:
                multi_ok += n == n_true
            else:
                single_ok += n == 1
            ref_path = CORPUS / path.replace(".wav", ".rttm")
            if path in TRUE_COUNTS and ref_path.exists():
                m, t = purity(turns_from_labels(centers, labels, step), rttm(ref_path))
                matched, total = matched + m, total + t
        mark = " (default)" if abs(thr - speakers.params["threshold"]) < 1e-9 else ""
        lines.append(f"| {thr:.2f}{mark} | {multi_ok} / {len(TRUE_COUNTS)} | {single_ok} / "
                     f"{len(truth) - len(TRUE_COUNTS)} | {matched / total:.3f} |")
    publish(Path(args.out), "speakers", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
