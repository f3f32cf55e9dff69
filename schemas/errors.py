"""The one enumeration of error codes voxlake writes into tables.

Every stage (ingest probe, decode, annotators, quality gate) reports failures with one of these codes,
never with sentinel values. The codes are part of the table contract: users filter on them in SQL.
"""
from __future__ import annotations

from enum import Enum


class ErrorCode(str, Enum):
    # Reading the file
    NOT_FOUND = "NOT_FOUND"  # listed (e.g. by a manifest) but not there
    READ_FAILED = "READ_FAILED"  # the storage layer failed to read the bytes
    EMPTY = "EMPTY"  # zero bytes, or zero audio frames
    TOO_LARGE = "TOO_LARGE"  # larger than ingest.max_file_bytes
    # Understanding the file
    UNKNOWN_FORMAT = "UNKNOWN_FORMAT"  # no decoder recognises the bytes
    NO_AUDIO_STREAM = "NO_AUDIO_STREAM"  # a media container without an audio track
    DECODE_FAILED = "DECODE_FAILED"  # recognised, but decoding raised
    TRUNCATED = "TRUNCATED"  # decodes to well short of what the header promises
    NON_FINITE = "NON_FINITE"  # NaN or infinite samples
    TOO_LONG = "TOO_LONG"  # longer than the configured duration limit
    TOO_SHORT = "TOO_SHORT"  # too short for an annotator to say anything
    BAD_MANIFEST_ENTRY = "BAD_MANIFEST_ENTRY"  # a manifest line that is not a JSON object with a path
    # Annotating
    NO_SPEECH = "NO_SPEECH"  # VAD found no speech, so speech-only features are undefined
    TIMEOUT = "TIMEOUT"  # exceeded the per-file time limit
    WORKER_CRASHED = "WORKER_CRASHED"  # the worker died (crash, OOM kill) with this file in progress, twice
    MODEL_ERROR = "MODEL_ERROR"  # a model failed on this input
    DEPENDENCY_FAILED = "DEPENDENCY_FAILED"  # an upstream annotator this one needs did not succeed
    # Not computed: a cheap check of the recipe already rules the file out (annotators.cascade); the
    # message names the check. The gate treats the value as not needed, not as unknown.
    GATED = "GATED"
    # Publishing
    EXPECTATION_FAILED = "EXPECTATION_FAILED"  # a row-level quality expectation failed
    PUBLISH_BLOCKED = "PUBLISH_BLOCKED"  # pending: judged in a batch the critical suite blocked
    CONTENT_CHANGED = "CONTENT_CHANGED"  # the bytes read at annotate no longer hash to the file's audio_id

    def __str__(self) -> str:  # so f-strings and logs show the bare code
        return self.value


PERMANENT_INGEST_ERRORS = frozenset(
    {
        ErrorCode.NOT_FOUND,
        ErrorCode.EMPTY,
        ErrorCode.TOO_LARGE,
        ErrorCode.UNKNOWN_FORMAT,
        ErrorCode.NO_AUDIO_STREAM,
        ErrorCode.DECODE_FAILED,
        ErrorCode.TRUNCATED,
    }
)
"""Ingest errors that mean the bytes will never yield audio: annotate skips these files."""
