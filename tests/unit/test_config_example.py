"""`config.example.yaml` documents every key with its default (design.md section 3).

A key added to `orchestrator.config.SCHEMA` but not to the example, or the other way round, or
an example value that drifts from the code's default, fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestrator.config import SCHEMA, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.yaml"


def _example_mapping() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{EXAMPLE} must be a mapping of sections"
    return data


def documented_keys(data: dict[str, Any]) -> set[str]:
    """Dotted keys of the example: `section.key` inside a section, `section` for a bare value.

    Values that are themselves mappings (`engines.env: {}`) are leaves: their keys are data.
    """
    keys: set[str] = set()
    for section, value in data.items():
        if isinstance(value, dict) and "" not in SCHEMA.get(section, {}):
            keys |= {f"{section}.{key}" for key in value}
        else:
            keys.add(str(section))
    return keys


def schema_keys() -> set[str]:
    return {f"{section}.{key}" if key else section for section, keys in SCHEMA.items() for key in keys}


def test_example_parses_to_the_all_defaults_config() -> None:
    assert load_config(EXAMPLE, env={}) == parse_config("", source="<empty>", env={})


def test_example_documents_exactly_the_schema_keys() -> None:
    documented, known = documented_keys(_example_mapping()), schema_keys()
    assert not known - documented, f"keys missing from {EXAMPLE.name}: {sorted(known - documented)}"
    unknown = sorted(documented - known)
    assert not unknown, f"keys in {EXAMPLE.name} the code does not know: {unknown}"


def test_example_values_are_the_schema_defaults() -> None:
    data = _example_mapping()
    for section, keys in SCHEMA.items():
        for key, (default, _check) in keys.items():
            dotted = f"{section}.{key}" if key else section
            value = data[section][key] if key else data[section]
            assert value == default, f"{dotted}: example says {value!r}, code says {default!r}"


def test_key_walk_sees_a_missing_or_extra_key() -> None:
    """The walk above is what makes the two key tests bite: check it on a doctored example."""
    data = _example_mapping()
    del data["vpn"]["wait_healthy_s"]
    data["api"]["colour"] = "blue"
    documented = documented_keys(data)
    assert "vpn.wait_healthy_s" in schema_keys() - documented
    assert documented - schema_keys() == {"api.colour"}
