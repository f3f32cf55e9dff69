"""Pure-Python annotators: decoded audio in, metadata out. No Spark here, and importing this package
imports no heavy library (torch, ctranslate2, librosa load lazily in each annotator's setup)."""
from annotators.base import AnnotationError, Annotator, AudioItem
from annotators.registry import ANNOTATORS, build

__all__ = ["ANNOTATORS", "AnnotationError", "Annotator", "AudioItem", "build"]
