"""Configuration: the settings' shape (settings.py), their only defaults (defaults.yaml), the schema that
checks a user's file (schema.py) and the loader that merges and builds them (loader.py)."""
from jobs.config.loader import ConfigError, deep_merge, load_config, with_overrides
from jobs.config.settings import Config

__all__ = ["Config", "ConfigError", "deep_merge", "load_config", "with_overrides"]
