"""How recordings are cut into clips: the rules' names, types and the clips annotator's own defaults.

One small dataclass, without the annotator's imports, so that the configuration's `clips:` section
(jobs.config.settings) is this class: the rules are named once. Their shipped values are the config's
defaults (jobs/config/defaults.yaml, where users read them); a standalone `Clips()` cuts with the defaults
here, and tests/test_clips.py keeps the two equal.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rules:
    min_s: float = 1.0  # shortest clip
    max_s: float = 30.0  # longest clip; a recording no longer than this is one clip
    pad_s: float = 0.2  # context kept around the first and last word, taken from the silence there
    min_pause_s: float = 0.1  # shortest pause a cut may fall in
    split_pause_s: float = 1.0  # a pause this long always ends a clip
    split_on_speaker_change: bool = True  # cut where the speaker changes
