"""The operator's desired state: its keys (`schema`), how a file becomes a `Config` (`loader`), and
the watcher that keeps the config in force in step with the file (`watcher`)."""

from orchestrator.config.loader import load_config, parse_config
from orchestrator.config.schema import (
    CONTAINER_NAME_VARS,
    DEFAULT_IMAGE,
    ENV_OVERRIDES,
    SCHEMA,
    ApiConfig,
    Config,
    schema_leaves,
)

__all__ = [
    "CONTAINER_NAME_VARS",
    "DEFAULT_IMAGE",
    "ENV_OVERRIDES",
    "SCHEMA",
    "ApiConfig",
    "Config",
    "load_config",
    "parse_config",
    "schema_leaves",
]
