"""`config.example.yaml` documents every key with its default (design.md section 3).

A key added to `orchestrator.config.SCHEMA` but not to the example, or the other way round, or
an example value that drifts from the code's default, fails here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import SCHEMA, load_config, parse_config, schema_leaves
from orchestrator.config.schema import SECRET_KEYS

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "config.example.yaml"


def _example_mapping() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{EXAMPLE} must be a mapping of sections"
    return data


def example_leaves(data: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of the example with their values: `section.key`, `section` for a bare value,
    `section.key.sub` inside a mapping the schema knows the keys of (`vpn.tunnel_probe`). Other
    mapping values (`engines.env: {}`) are leaves: their keys are data."""
    nested = {k.rsplit(".", 1)[0] for k in schema_leaves() if k.count(".") == 2}
    out: dict[str, Any] = {}
    for section, value in data.items():
        if not isinstance(value, dict) or "" in SCHEMA.get(section, {}):
            out[str(section)] = value
            continue
        for key, item in value.items():
            dotted = f"{section}.{key}"
            if dotted in nested and isinstance(item, dict):
                out |= {f"{dotted}.{sub}": v for sub, v in item.items()}
            else:
                out[dotted] = item
    return out


def test_example_parses_to_the_all_defaults_config() -> None:
    assert load_config(EXAMPLE, env={}) == parse_config("", source="<empty>", env={})


def test_example_documents_exactly_the_schema_keys() -> None:
    documented, known = set(example_leaves(_example_mapping())), set(schema_leaves())
    assert not known - documented, f"keys missing from {EXAMPLE.name}: {sorted(known - documented)}"
    unknown = sorted(documented - known)
    assert not unknown, f"keys in {EXAMPLE.name} the code does not know: {unknown}"


def test_example_values_are_the_schema_defaults() -> None:
    documented = example_leaves(_example_mapping())
    for dotted, default in schema_leaves().items():
        value = documented[dotted]
        assert value == default, f"{dotted}: example says {value!r}, code says {default!r}"


def test_key_walk_sees_a_missing_or_extra_key() -> None:
    """The walk above is what makes the two key tests bite: check it on a doctored example."""
    data = _example_mapping()
    del data["vpn"]["wait_healthy_s"]
    del data["vpn"]["tunnel_probe"]["retries"]
    data["api"]["colour"] = "blue"
    data["vpn"]["tunnel_probe"]["shade"] = 1
    documented = set(example_leaves(data))
    assert {"vpn.wait_healthy_s", "vpn.tunnel_probe.retries"} <= set(schema_leaves()) - documented
    assert documented - set(schema_leaves()) == {"api.colour", "vpn.tunnel_probe.shade"}


@pytest.mark.parametrize(
    "stack", sorted(p.parent.parent.name for p in REPO_ROOT.glob("compose/*/config/orchestrator.yaml"))
)
def test_no_secret_is_written_into_a_stacks_mounted_yaml(stack: str) -> None:
    """The stacks set keys from .env (environment variables); the YAML they mount holds none."""
    data = yaml.safe_load((REPO_ROOT / "compose" / stack / "config" / "orchestrator.yaml").read_text())
    assert SECRET_KEYS
    for dotted in SECRET_KEYS:
        section, key = dotted.split(".")
        assert (data.get(section) or {}).get(key) is None, f"{stack}: {dotted} is set in the YAML"
