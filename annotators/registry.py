"""Names → annotator classes, imported lazily so `import annotators` stays light (no torch, ctranslate2,
librosa), plus dependency ordering."""
from __future__ import annotations

import importlib

from annotators.base import Annotator

# the annotators voxlake ships, by name
BUILT_IN: dict[str, str] = {
    "levels": "annotators.levels:Levels",
    "vad": "annotators.vad:Vad",
    "snr": "annotators.snr:Snr",
    "bandwidth": "annotators.bandwidth:Bandwidth",
    "pitch": "annotators.pitch:Pitch",
    "quality": "annotators.quality:Quality",
    "asr": "annotators.asr:Asr",
    "text": "annotators.text:Text",
    "fingerprint": "annotators.fingerprint:Fingerprint",
    "speakers": "annotators.speakers:Speakers",
    "events": "annotators.events:Events",
    "distillmos": "annotators.distillmos:DistillMos",
    "clips": "annotators.clips:Clips",
}
# what this process knows: the built-in ones and the plugins registered (annotate.plugins)
ANNOTATORS: dict[str, str] = dict(BUILT_IN)


def register(name: str, target: str) -> None:
    """Add an annotator class ("module:Class") by name: plugins from the config (annotate.plugins),
    registered in the driver and in each worker before anything is built."""
    if ANNOTATORS.get(name, target) != target:
        raise ValueError(f"annotator '{name}' is already registered as {ANNOTATORS[name]}")
    ANNOTATORS[name] = target


def load_class(name: str) -> type[Annotator]:
    try:
        module, cls = ANNOTATORS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown annotator '{name}'; known: {', '.join(ANNOTATORS)}") from None
    return getattr(importlib.import_module(module), cls)


def build(names: list[str], params: dict[str, dict] | None = None) -> list[Annotator]:
    """Instantiate `names` in dependency order. A required annotator missing from `names` is an error."""
    params = params or {}
    classes = {n: load_class(n) for n in names}
    ordered: list[str] = []

    def visit(n: str, path: tuple[str, ...] = ()):
        if n in ordered:
            return
        if n in path:
            raise ValueError(f"annotator dependency cycle: {' -> '.join(path + (n,))}")
        for dep in classes[n].requires:
            if dep not in classes:
                raise ValueError(f"annotator '{n}' needs '{dep}': add it to the annotator list")
            visit(dep, path + (n,))
        for dep in classes[n].uses:
            if dep in classes:
                visit(dep, path + (n,))
        ordered.append(n)

    for n in names:
        visit(n)
    return [classes[n](params.get(n)) for n in ordered]


def dependency_closure(ordered: list[Annotator]) -> dict[str, set[str]]:
    """For each annotator of `ordered` (dependency order), every annotator of the list it reads from,
    transitively (requires, and uses where present)."""
    by_name = {a.name: a for a in ordered}
    closure: dict[str, set[str]] = {}
    for a in ordered:  # inputs come first
        deps = {d for d in (*a.requires, *a.uses) if d in by_name}
        closure[a.name] = deps | set().union(*(closure[d] for d in deps)) if deps else set()
    return closure
