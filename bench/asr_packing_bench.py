"""Packing short clips into shared Whisper windows: speed, WER and where the words land, on the corpus.

Every corpus speech clip of at most `PackSettings.max_clip_s` with a reference transcript, decoded by
the `asr` annotator's batched decoder (model, options and batch size of the default config) once with
each clip in its own window and once packed, on one core. WER is per language against the corpus
references (zh and ja are not word-segmented: left out of WER, kept in the timing).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.report import publish

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "corpus"  # the real-audio test corpus, in the repository


def moved_words_between_neighbours(own: list[list[str]], packed: list[list[str]]) -> int:
    """Words that left one clip for the next or the previous one (clips are packed in input order):
    the first word of clip k+1 (own window) found ending clip k when packed and missing from k+1, or
    the last word of clip k found starting clip k+1 and missing from k."""
    moved = 0
    for k in range(len(own) - 1):
        a_own, b_own, a_pk, b_pk = own[k], own[k + 1], packed[k], packed[k + 1]
        if b_own and a_pk and a_pk[-1] == b_own[0] and (not a_own or a_own[-1] != b_own[0]) \
                and (not b_pk or b_pk[0] != b_own[0]):
            moved += 1
        if a_own and b_pk and b_pk[0] == a_own[-1] and (not b_own or b_own[0] != a_own[-1]) \
                and (not a_pk or a_pk[-1] != a_own[-1]):
            moved += 1
    return moved


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {0})
    import jiwer
    from faster_whisper import WhisperModel, decode_audio

    from annotators.asr import DECODE_OPTIONS, Asr, as_int16_grid
    from annotators.models import resolve_whisper
    from annotators.text import wer_normalize
    from annotators.whisper_batch import BatchedWhisper
    from annotators.whisper_pack import PackSettings, transcribe_packed

    settings = PackSettings()
    params = Asr.default_params
    model = WhisperModel(resolve_whisper(params["model"], REPO / ".deps" / "models").path, device="cpu",
                         compute_type=params["compute_type"], cpu_threads=1)
    options = {k: params[k] for k in DECODE_OPTIONS}
    with open(CORPUS / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if r["kind"] == "speech" and r["reference_transcript"] and r["language"]
                and float(r["duration_s"]) <= settings.max_clip_s]
    audios = [as_int16_grid(decode_audio(str(CORPUS / r["path"]))) for r in rows]
    seconds = sum(len(a) for a in audios) / 16000

    plain = BatchedWhisper(model, options, params["batch_size"])
    t = time.perf_counter()
    alone = plain.transcribe(audios, [None] * len(audios))
    alone_s = time.perf_counter() - t
    packer = BatchedWhisper(model, options, params["batch_size"])
    t = time.perf_counter()
    packed = transcribe_packed(packer, audios, [None] * len(audios), settings)
    packed_s = time.perf_counter() - t

    def text(result):
        return " ".join(s.text.strip() for s in result[0])

    by_lang = defaultdict(lambda: ([], [], []))
    changed = moved_words = 0
    worst = 0.0
    for r, a, p in zip(rows, alone, packed, strict=True):
        lang = r["language"]
        ref, hyp_a, hyp_p = (wer_normalize(x, lang) for x in (r["reference_transcript"], text(a), text(p)))
        if lang not in ("zh", "ja"):
            for bucket, value in zip(by_lang[lang], (ref, hyp_a or "<empty>", hyp_p or "<empty>"), strict=True):
                bucket.append(value)
        if hyp_a != hyp_p:
            changed += 1
            if hyp_a:
                out = jiwer.process_words(hyp_a, hyp_p or "<empty>")
                moved_words += out.substitutions + out.deletions + out.insertions
                worst = max(worst, out.wer)
    moved = moved_words_between_neighbours(
        [wer_normalize(text(a), r["language"]).split() for r, a in zip(rows, alone, strict=True)],
        [wer_normalize(text(p), r["language"]).split() for r, p in zip(rows, packed, strict=True)])
    lines = [
        "## ASR: packing short clips into shared windows",
        "",
        f"{len(rows)} corpus speech clips up to {settings.max_clip_s:g} s with references ({seconds:.0f} s of audio), "
        f"model {params['model']} {params['compute_type']}, beam {params['beam_size']}, batch {params['batch_size']}, "
        f"one core. Packed: clips of one language end to end with {settings.gap_s:g} s of silence, at most "
        f"{settings.window_s:g} s per window; a clip is packed when detection on its own frames gives its "
        f"language at least {settings.min_language_prob:g}.",
        "",
        "| | wall s | x realtime | encoder windows |",
        "| --- | ---: | ---: | ---: |",
        f"| each clip in its own window | {alone_s:.1f} | {seconds / alone_s:.1f} | {plain.calls['windows']} |",
        f"| packed ({packer.calls.get('packed_clips', 0)} clips packed) | {packed_s:.1f} | {seconds / packed_s:.1f} | "
        f"{packer.calls['windows']} |",
        "",
        "| language | clips | WER own window | WER packed | difference (points) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    worst_delta = 0.0
    for lang, (refs, hyps_a, hyps_p) in sorted(by_lang.items()):
        wa, wp = jiwer.wer(refs, hyps_a), jiwer.wer(refs, hyps_p)
        worst_delta = max(worst_delta, abs(wp - wa))
        lines.append(f"| {lang} | {len(refs)} | {wa:.2%} | {wp:.2%} | {100 * (wp - wa):+.2f} |")
    lines += [
        "",
        f"Clips whose packed transcript differs from their own-window one: {changed} of {len(rows)} "
        f"({moved_words} word edits in all; the worst clip {worst:.0%} WER against its own-window transcript). "
        f"Largest WER change of a language: {100 * worst_delta:.2f} points (the bound is 0.5). "
        f"Boundary words that moved to the neighbouring clip: **{moved}**.",
        "",
        f"Packing is {'on' if Asr.default_params['pack_short_clips'] else 'off'} by default "
        "(`annotate.params.asr.pack_short_clips`): it is only allowed when no word moves between clips.",
    ]
    publish(Path(args.out), "asr_packing", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
