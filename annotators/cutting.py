"""Where a recording is cut into clips: the cutting rules applied to its words, VAD speech and speaker turns.

Pure functions over the upstream results, shared by the clips annotator (which cuts and measures) and by the
file-level MOS annotators (quality, distillmos), which place a long recording's scored windows inside the
clips the shipped rules make of it, so that the clips annotator reads those scores instead of running the
models again (`clip_window_starts`). The algorithm is described in annotators/clips.py's docstring.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from annotators.base import OK, AudioItem
from annotators.clip_rules import Rules

SR = 16000
SNAP_S = 0.5  # how far a clip edge follows the VAD's speech beyond the word timestamps
SPILL_S = 0.1  # VAD speech this short at a word's edge, from a segment that goes on past it, is the neighbour's
TERMINAL = (".", "?", "!", "。", "？", "！", "…", "।", "؟")
# the search's costs (see the module docstring): only their order matters
CUT_AT_SENTENCE_END = 0.0
CUT_IN_PAUSE = 1.0  # minus up to half of it for a long pause
PER_CLIP = 0.1
OUT_OF_BOUNDS = 1000.0


@dataclass(frozen=True)
class Unit:
    """A word (or, without words, a VAD speech segment) the cutter keeps whole."""

    start: float
    end: float
    word: dict | None = None  # the ASR word, absolute times
    label: int | None = None  # speaker label at its midpoint

    @property
    def sentence_end(self) -> bool:
        return bool(self.word) and self.word["word"].rstrip().endswith(TERMINAL)


def label_at(turns: list[dict], t: float, starts: list[float] | None = None) -> int | None:
    """The speaker label of the turn covering time t (turns are sorted and disjoint; `starts`, their start
    times, when the caller asks for many); None outside them."""
    starts = starts if starts is not None else [x["start_s"] for x in turns]
    k = bisect.bisect_right(starts, t) - 1
    return int(turns[k]["speaker"]) if k >= 0 and t < turns[k]["end_s"] else None


def trim_to_speech(start: float, end: float, speech: list[dict], long_pause: float,
                   ends: list[float] | None = None) -> tuple[float, float]:
    """A word's timestamps without the non-speech (per the VAD) they stretch over. Whisper often lets a
    word begin in the pause before it (or, at times, run across seconds of music or noise). The word is cut
    down to the VAD speech under it, with SNAP_S to spare on each side (a soft onset such as an aspirated
    /p/ is often below the VAD's threshold): from the first speech in it, or the first after its last
    silence of at least `long_pause`, to the last speech in it. A word with no VAD speech under it keeps
    its timestamps."""
    ends = ends if ends is not None else [s["end_s"] for s in speech]  # sorted: VAD segments are disjoint
    inside = []
    for s in speech[bisect.bisect_right(ends, start):]:
        if s["start_s"] >= end:
            break
        inside.append((max(s["start_s"], start), min(s["end_s"], end)))
    # a sliver of the neighbouring word's VAD segment at either edge is that word's speech, not this one's
    if len(inside) > 1 and inside[0][0] == start and inside[0][1] - start < SPILL_S:
        inside = inside[1:]
    if len(inside) > 1 and inside[-1][1] == end and end - inside[-1][0] < SPILL_S:
        inside = inside[:-1]
    if not inside:
        return start, end
    a = inside[0][0]
    for k in range(1, len(inside)):
        if inside[k][0] - inside[k - 1][1] >= long_pause:
            a = inside[k][0]
    a, b = max(start, a - SNAP_S), min(end, inside[-1][1] + SNAP_S)
    return a, max(a, b)


def units_of(words: list[dict], speech: list[dict], turns: list[dict], long_pause: float) -> list[Unit]:
    """The words in time order, trimmed to the speech under them (or the VAD segments when there are no
    words), each with its speaker label."""
    if words:
        spans, ends = [], [s["end_s"] for s in speech]
        for w in words:
            a, b = float(w["start_s"]), max(float(w["end_s"]), float(w["start_s"]))
            if speech:
                a, b = trim_to_speech(a, b, speech, long_pause, ends)
            spans.append((a, b, w))
        spans.sort(key=lambda t: (t[0], t[1]))
    else:
        spans = [(float(s["start_s"]), float(s["end_s"]), None) for s in speech]
    starts = [x["start_s"] for x in turns]
    return [Unit(a, b, w, label_at(turns, (a + b) / 2, starts) if turns else None) for a, b, w in spans]


def _passages(units: list[Unit], rules: Rules) -> list[tuple[int, int]]:
    """[a, b) index ranges split at long pauses and (optionally) speaker changes. Where the label changes
    (from the last unit with a label to the next one with another), the split goes in the longest pause
    between them, if one is at least `min_pause_s` long."""
    cuts, reached, last_labelled = [], units[0].end if units else 0.0, None
    for k in range(1, len(units)):
        if units[k].start - reached >= rules.split_pause_s:
            cuts.append(k)
        reached = max(reached, units[k].end) if not cuts or cuts[-1] != k else units[k].end
        if units[k - 1].label is not None:
            last_labelled = k - 1
        cur = units[k].label
        if (rules.split_on_speaker_change and cur is not None and last_labelled is not None
                and units[last_labelled].label != cur and not (cuts and cuts[-1] > last_labelled)):
            gaps = [(units[j].start - units[j - 1].end, j) for j in range(last_labelled + 1, k + 1)]
            gap, j = max(gaps)
            if gap >= rules.min_pause_s:
                cuts.append(j)
    bounds = [0, *sorted(set(cuts)), len(units)] if units else []
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def _cut_cost(units: list[Unit], j: int, b: int) -> float:
    """What ending a clip before unit j costs (j == b: the passage ends there anyway)."""
    if j == b:
        return 0.0
    if units[j - 1].sentence_end:
        return CUT_AT_SENTENCE_END
    gap = units[j].start - units[j - 1].end
    return CUT_IN_PAUSE - 0.5 * min(gap, 1.0)


def _split_passage(units: list[Unit], a: int, b: int, rules: Rules) -> list[tuple[int, int]]:
    """Cheapest cutting of units[a:b] into clips (see the module docstring)."""
    cuts = [a] + [k for k in range(a + 1, b) if units[k].start - units[k - 1].end >= rules.min_pause_s] + [b]
    best = {a: (0.0, None)}
    ends = np.maximum.accumulate(np.array([u.end for u in units[a:b]]))  # running max end (overlapping words)
    for jx in range(1, len(cuts)):
        j = cuts[jx]
        choice = None
        for ix in range(jx - 1, -1, -1):
            i = cuts[ix]
            length = float(ends[j - 1 - a]) - units[i].start + 2 * rules.pad_s
            if length > rules.max_s and ix < jx - 1:
                break  # longer still further back; the next cut back was tried as the only way out
            cost = best[i][0] + PER_CLIP + _cut_cost(units, j, b)
            if length > rules.max_s or length < rules.min_s:
                cost += OUT_OF_BOUNDS + abs(length - min(max(length, rules.min_s), rules.max_s))
            if choice is None or cost < choice[0]:
                choice = (cost, i)
        best[j] = choice
    out, j = [], b
    while j != a:
        i = best[j][1]
        out.append((i, j))
        j = i
    return out[::-1]


def _vad_edges(speech: list[dict]) -> tuple[list[float], list[float]]:
    return [s["start_s"] for s in speech], [s["end_s"] for s in speech]


def cut(units: list[Unit], speech: list[dict], duration: float,
        rules: Rules) -> list[tuple[float, float, list[int]]]:
    """The clips of a recording longer than max_s (its units_of): (start_s, end_s, indexes of its units)
    in time order."""
    groups = [g for a, b in _passages(units, rules) for g in _split_passage(units, a, b, rules)]
    vad_starts, vad_ends = _vad_edges(speech)
    out = []
    for n, (i, j) in enumerate(groups):
        first, last_end = units[i], max(u.end for u in units[i:j])
        before = (units[groups[n - 1][0]:groups[n - 1][1]] if n else [])
        after_start = units[groups[n + 1][0]].start if n + 1 < len(groups) else duration
        prev_end = max((u.end for u in before), default=0.0)
        low = (prev_end + first.start) / 2 if n else 0.0  # half the pause each side: neighbours never overlap
        high = (last_end + after_start) / 2 if n + 1 < len(groups) else duration
        lead = _vad_lead(vad_starts, vad_ends, first.start)
        trail = _vad_trail(vad_starts, vad_ends, last_end)
        start = max(low, min(first.start, first.start - lead) - rules.pad_s, 0.0)
        end = min(high, last_end + trail + rules.pad_s, duration)
        out.append((start, max(end, start), list(range(i, j))))
    return out


def _vad_lead(starts: list[float], ends: list[float], t: float) -> float:
    """How long before t the VAD segment holding t began (at most SNAP_S; 0 outside speech)."""
    k = bisect.bisect_right(starts, t) - 1
    return min(SNAP_S, t - starts[k]) if k >= 0 and t < ends[k] else 0.0


def _vad_trail(starts: list[float], ends: list[float], t: float) -> float:
    """How long after t the VAD segment holding t ends (at most SNAP_S; 0 outside speech)."""
    k = bisect.bisect_right(starts, t) - 1
    return min(SNAP_S, ends[k] - t) if k >= 0 and t <= ends[k] else 0.0


def ok_result(item: AudioItem, name: str) -> dict | None:
    """An upstream annotator's result for this file when it succeeded, else None."""
    r = item.upstream.get(name)
    return r if r and r.get("status") == OK else None


@dataclass(frozen=True)
class Inputs:
    """What cutting reads from the upstream results: the VAD's speech segments, the ASR words (absolute
    times, each with `_seg`, the index of its ASR segment) and the speaker turns in time order."""

    speech: list[dict]
    words: list[dict]
    turns: list[dict]

    @classmethod
    def of(cls, item: AudioItem) -> Inputs:
        vad, asr, speakers = ok_result(item, "vad"), ok_result(item, "asr"), ok_result(item, "speakers")
        words = [dict(w, _seg=k) for k, s in enumerate((asr or {}).get("segments") or [])
                 for w in (s.get("words") or [])]
        return cls(speech=(vad or {}).get("speech_segments") or [], words=words,
                   turns=sorted((speakers or {}).get("turns") or [], key=lambda t: t["start_s"]))


def clip_spans(item: AudioItem, rules: Rules) -> list[tuple[float, float]]:
    """(start_s, end_s) of each clip `rules` cut this recording into; [] when it is no longer than max_s
    (one whole-file clip) or has nothing to cut."""
    if item.duration_s <= rules.max_s:
        return []
    got = Inputs.of(item)
    units = units_of(got.words, got.speech, got.turns, rules.split_pause_s)
    return [(a, b) for a, b, _ in cut(units, got.speech, item.duration_s, rules)]


def centred_start(start_s: float, end_s: float, window: int) -> int | None:
    """The first sample of the window of `window` samples centred in [start_s, end_s] (as the clips
    annotator takes it from the span's samples); None when the span is shorter than the window."""
    a, b = int(start_s * SR), int(end_s * SR)
    return a + (b - a - window) // 2 if b - a >= window else None


def placed_window_starts(item: AudioItem, window: int, keep: int, grid: list[int], coverage: float) -> list[int]:
    """The windows a file-level MOS annotator (quality, distillmos) scores: `grid`, its evenly spaced
    windows, when that is empty or at full coverage (every window is scored: nothing to place), else
    clip_window_starts."""
    if not grid or coverage >= 1.0:
        return grid
    return clip_window_starts(item, window, keep, grid)


def clip_window_starts(item: AudioItem, window: int, keep: int, grid: list[int]) -> list[int]:
    """Where a long recording's `keep` scored windows of `window` samples start: centred in the clips the
    shipped cutting rules (Rules()) make of it, spread evenly over the clips at least a window long, and,
    where fewer clips are that long, topped up from `grid` (the evenly spaced windows) with windows that
    overlap none already chosen. The clips annotator reads a clip's score from a window inside it, so a
    window placed in a clip is scored once for the file and its clip. The shipped rules, not the
    configured ones: the windows must not depend on the clip rules (changing them re-cuts without
    re-running these models); with other rules, fewer windows fall inside clips, and the clips annotator
    scores the rest itself. `grid` as is for a recording no longer than the rules' max_s or with nothing
    to cut."""
    spans = clip_spans(item, Rules())
    if not spans:
        return grid
    placed = [s for s in (centred_start(a, b, window) for a, b in spans) if s is not None]
    if len(placed) > keep:
        placed = [placed[int(i)] for i in np.linspace(0, len(placed) - 1, keep).round()]
    for s in grid:
        if len(placed) >= keep:
            break
        if all(s + window <= p or p + window <= s for p in placed):
            placed.append(s)
    return sorted(placed)
