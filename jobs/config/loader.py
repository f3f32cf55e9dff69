"""One explicit configuration object, built from the shipped defaults, an optional YAML file and CLI flags.

Nothing reads configuration from globals: jobs receive a `Config` and pass the parts they need down.
"""
from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml

from jobs.config.schema import config_errors
from jobs.config.settings import Config

DEFAULTS_PATH = Path(__file__).with_name("defaults.yaml")


class ConfigError(ValueError):
    """Bad configuration or usage: the CLI turns this into exit code 2."""


def deep_merge(base: dict, override: dict) -> dict:
    """`override` over `base`, section by section. An empty section (`publish:` with nothing under it,
    which YAML reads as null) overrides nothing."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(out.get(key), dict) and (value is None or isinstance(value, dict)):
            out[key] = deep_merge(out[key], value or {})
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _build(cls, tree: dict[str, Any]):
    """The dataclass `cls` from a validated tree (nested sections become their own dataclasses)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in tree:
            continue  # command-line inputs
        value = tree[f.name]
        values[f.name] = _build(hints[f.name], value) if dataclasses.is_dataclass(hints[f.name]) else value
    return cls(**values)


def config_from_tree(tree: dict, sources=(), manifests=(), origin: str = "") -> Config:
    """Validate a full settings tree (defaults already merged in) and build the Config."""
    errors = config_errors(tree, Config)
    if errors:
        raise ConfigError(f"invalid configuration{origin}:\n  " + "\n  ".join(errors))
    if not tree.get("warehouse"):
        raise ConfigError("no warehouse given: pass --warehouse DIR or set 'warehouse' in the config")
    run = tree["run"]
    if run["dead_after_s"] <= run["heartbeat_s"]:  # every run would count as dead (and fence itself off)
        raise ConfigError(f"invalid configuration{origin}: run.dead_after_s ({run['dead_after_s']}) must be larger "
                          f"than run.heartbeat_s ({run['heartbeat_s']})")
    clips = tree["clips"]
    if not 0 < clips["min_s"] < clips["max_s"]:  # no clip could pass clip_duration
        raise ConfigError(f"invalid configuration{origin}: clips.min_s ({clips['min_s']}) must be above 0 and below "
                          f"clips.max_s ({clips['max_s']})")
    if clips["split_pause_s"] < clips["min_pause_s"]:  # a forced cut would fall in a pause too short to cut in
        raise ConfigError(f"invalid configuration{origin}: clips.split_pause_s ({clips['split_pause_s']}) must be at "
                          f"least clips.min_pause_s ({clips['min_pause_s']})")
    return dataclasses.replace(_build(Config, tree), sources=tuple(sources or ()), manifests=tuple(manifests or ()))


def load_config(
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    sources: list[str] | None = None,
    manifests: list[str] | None = None,
) -> Config:
    """defaults.yaml, then `config_file`, then `overrides` (CLI flags), validated into a Config."""
    tree = _load_yaml(DEFAULTS_PATH)
    if config_file:
        tree = deep_merge(tree, _load_yaml(Path(config_file)))
    tree = deep_merge(tree, overrides or {})
    origin = f" (from {config_file} and the command line)" if config_file else ""
    return config_from_tree(tree, sources, manifests, origin)


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """`config` with some settings replaced (checked like a user's file), same inputs."""
    return config_from_tree(deep_merge(config.as_dict(), overrides), config.sources, config.manifests)
