"""One explicit configuration object, built from the shipped defaults, an optional YAML file and CLI flags.

Nothing reads configuration from globals: jobs receive a `Config` and pass the parts they need down.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULTS_PATH = Path(__file__).with_name("defaults.yaml")


class ConfigError(ValueError):
    """Bad configuration or usage: the CLI turns this into exit code 2."""


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
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


@dataclass(frozen=True)
class Config:
    """The merged settings. `raw` keeps the full tree (annotators and recipe read their own sections)."""

    raw: dict
    sources: tuple[str, ...] = ()
    manifests: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def warehouse(self) -> str:
        return str(self.raw["warehouse"])

    def section(self, name: str) -> dict:
        return self.raw.get(name) or {}

    def hash(self) -> str:
        """Stable hash of everything that changes results (recorded in the run ledger)."""
        blob = json.dumps(self.raw, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_config(
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    sources: list[str] | None = None,
    manifests: list[str] | None = None,
) -> Config:
    from jobs.config_schema import config_errors

    defaults = _load_yaml(DEFAULTS_PATH)
    raw = defaults
    if config_file:
        raw = deep_merge(raw, _load_yaml(Path(config_file)))
    raw = deep_merge(raw, overrides or {})
    errors = config_errors(raw, defaults)
    if errors:
        origin = f" (from {config_file} and the command line)" if config_file else ""
        raise ConfigError(f"invalid configuration{origin}:\n  " + "\n  ".join(errors))
    if not raw.get("warehouse"):
        raise ConfigError("no warehouse given: pass --warehouse DIR or set 'warehouse' in the config")
    return Config(raw=raw, sources=tuple(sources or ()), manifests=tuple(manifests or ()))
