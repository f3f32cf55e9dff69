"""Long-form recordings built from the corpus, with every piece's placement known (tests and bench/clips_bench).

One main reader (LJ Speech: a single female speaker) reads her utterances in passages of a few, with short
pauses between them; between passages come music, noise, silence or another voice (LibriSpeech, JFK,
TIMIT, speechbrain, Common Voice). The result is a 16 kHz mono WAV and the placement of every piece:
kind (main, other, music, noise, silence), start and end in seconds, source file and reference text.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parent / "data" / "corpus"
SR = 16000
OTHER_VOICES = ["speech/en/librispeech_2412-153948-0000.flac", "speech/en/jfk.flac",
                "speech/en/librispeech_1995-1837-0001.wav", "speech/en/LDC93S1_8k_mono.wav",
                "speech/en/speechbrain_example2.flac", "speech/en/librispeech_2412-153948-0001.flac"]
MUSIC = ["nonspeech/Kevin_MacLeod_-_Vibe_Ace.ogg", "nonspeech/Brahms_Hungarian_Dance_5_string_orchestra.ogg",
         "nonspeech/sorohanro_-_solo-trumpet-06.hq.ogg"]
NOISE = ["nonspeech/speechbrain_noise2.wav"]


@dataclass
class Piece:
    kind: str  # main | other | music | noise | silence
    start_s: float
    end_s: float
    source: str | None = None
    text: str | None = None


def manifest() -> dict[str, dict]:
    with open(CORPUS / "MANIFEST.tsv", newline="", encoding="utf-8") as f:
        return {r["path"]: r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)}


def load(rel: str) -> np.ndarray:
    """A corpus file as 16 kHz mono float32 (voxlake's own decoder)."""
    from annotators.decode import decode

    with open(CORPUS / rel, "rb") as f:
        return decode(f).samples


def at_rms(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) or 1.0
    return (x * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def main_utterances() -> list[str]:
    return sorted(p for p in manifest() if p.startswith("speech/en/LJ"))


def build(path: Path, repeats: int = 1, seed: int = 7, passage: tuple[int, int] = (2, 4),
          inserts: tuple[str, ...] = ("music", "other", "noise", "other", "silence"),
          limit: int | None = None, first: int = 0, first_insert: int = 0) -> list[Piece]:
    """Write the long-form WAV at `path` (the main reader's utterances `repeats` times over, or `limit` of
    them from the `first`; the inserts' sources cycled from `first_insert`) and return the placement of
    every piece in it."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    meta = manifest()
    mains = (main_utterances() * repeats)[first:][:limit]
    parts: list[np.ndarray] = []
    pieces: list[Piece] = []
    t = 0

    def put(kind: str, x: np.ndarray, source: str | None = None, text: str | None = None) -> None:
        nonlocal t
        parts.append(x)
        if kind != "pause":
            pieces.append(Piece(kind, t / SR, (t + len(x)) / SR, source, text))
        t += len(x)

    def pause(lo: float, hi: float) -> None:
        # a quiet room, not digital silence: -70 dBFS white noise
        put("pause", (rng.standard_normal(int(rng.uniform(lo, hi) * SR)) * 10 ** (-70 / 20)).astype(np.float32))

    put("silence", np.zeros(int(0.5 * SR), np.float32))
    k, n_insert = 0, first_insert
    while k < len(mains):
        for _ in range(int(rng.integers(passage[0], passage[1] + 1))):
            if k >= len(mains):
                break
            rel = mains[k]
            put("main", at_rms(load(rel), -22.0), rel, meta[rel]["reference_transcript"])
            pause(0.4, 0.9)
            k += 1
        if k >= len(mains):
            break
        kind = inserts[(n_insert - first_insert) % len(inserts)]
        pause(0.6, 1.0)
        if kind == "music":
            rel = MUSIC[n_insert % len(MUSIC)]
            x = load(rel)
            start = int(rng.integers(0, max(1, len(x) - 10 * SR)))
            put("music", at_rms(x[start: start + int(rng.uniform(6, 10) * SR)], -22.0), rel)
        elif kind == "noise":
            rel = NOISE[n_insert % len(NOISE)]
            x = load(rel)
            put("noise", at_rms(np.tile(x, 4)[: int(rng.uniform(4, 7) * SR)], -30.0), rel)
        elif kind == "silence":
            put("silence", np.zeros(int(rng.uniform(3, 5) * SR), np.float32))
        else:
            rel = OTHER_VOICES[n_insert % len(OTHER_VOICES)]
            put("other", at_rms(load(rel), -22.0), rel, meta[rel]["reference_transcript"] or None)
        pause(0.6, 1.0)
        n_insert += 1
    put("silence", np.zeros(int(0.5 * SR), np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.concatenate(parts), SR, subtype="PCM_16")
    return pieces


def write_placement(pieces: list[Piece], path: Path) -> None:
    import json

    path.write_text("\n".join(json.dumps(asdict(p)) for p in pieces) + "\n", encoding="utf-8")


def _align(samples: np.ndarray, pieces: list[Piece]):
    """Per speech piece with a reference text: (piece, its reference words, the aligned ones as
    (start_s, end_s, word) from pocketsphinx's forced alignment, English)."""
    import re

    from pocketsphinx import Decoder

    decoder = Decoder(samprate=SR, bestpath=False, loglevel="FATAL")
    for p in pieces:
        if p.kind not in ("main", "other") or not p.text:
            continue
        words = re.sub(r"[^a-z' ]", " ", p.text.lower()).split()
        # words outside pocketsphinx's dictionary are left out: their audio joins a neighbouring word
        known = [w for w in words if decoder.lookup_word(w)]
        pcm = (np.clip(samples[int(p.start_s * SR): int(p.end_s * SR)], -1, 1) * 32767).astype(np.int16)
        decoder.set_align_text(" ".join(known))
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), full_utt=True)
        decoder.end_utt()
        aligned = [(p.start_s + seg.start_frame / 100, p.start_s + (seg.end_frame + 1) / 100, seg.word)
                   for seg in decoder.seg()
                   if seg.word not in ("<s>", "</s>", "<sil>", "[NOISE]") and not seg.word.startswith("+")]
        yield p, words, aligned


def reference_words(samples: np.ndarray, pieces: list[Piece]) -> list[tuple[float, float, str]]:
    """(start_s, end_s, word) of every reference word pocketsphinx could align (of the main reader and the
    other voices)."""
    return [w for _, _, aligned in _align(samples, pieces) for w in aligned]


def reference_timeline(samples: np.ndarray, pieces: list[Piece]) -> list[tuple[float, str]]:
    """(time_s, word) of every word of every reference text, in order: an aligned word at its midpoint, a
    word pocketsphinx does not know between its aligned neighbours (or at its piece's edge)."""
    out = []
    for p, words, aligned in _align(samples, pieces):
        mids = iter([((a + b) / 2, w) for a, b, w in aligned])
        nxt = next(mids, None)
        times: list[float | None] = []
        for w in words:
            if nxt is not None and nxt[1].split("(")[0] == w:
                times.append(nxt[0])
                nxt = next(mids, None)
            else:
                times.append(None)
        known = [(k, t) for k, t in enumerate(times) if t is not None]
        for k, w in enumerate(words):
            if times[k] is None:
                before = max((t for j, t in known if j < k), default=p.start_s)
                after = min((t for j, t in known if j > k), default=p.end_s)
                times[k] = (before + after) / 2
            out.append((times[k], w))
    return out
