"""How each engine image family is started, and which family an image belongs to.

The engine images read their settings differently (docs/engine-images.md), so the daemon
needs a launch template per family to give every engine its own HTTP, HTTPS, API and P2P ports
and a cache limit:

- `acestream-http-proxy` (`ghcr.io/krinkuto11/acestream-http-proxy`, amd64): its entrypoint
  reads a few variables and has none for the API port, and it drops any command. So the
  template overrides the entrypoint to run the engine binary with every flag, behind the image's
  own init (`catatonit`), the way the image's entrypoint ends.
- `jopsis` (`jopsis/acestream:x64`): one `ACESTREAM_ARGS` string, word-split by its `sh -c`
  command (a command would replace it, so none is given).
- `jopsis-arm` (`jopsis/acestream:arm32-*`, `arm64-*`) and `aceserve`
  (`ghcr.io/krinkuto11/acestream:latest-*`, `jopsis/aceserve`, multi-arch): the command line,
  `python main.py` plus the image's own defaults and the engine's flags (AceServe runs without
  `--client-console`).

`preset: auto` picks the family from the image name; an image it does not know needs
`engines.launch.preset` or a `custom` template (`entrypoint`, `command`, `env`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any

from orchestrator.config.checks import Section, SubKeyError, kind
from reconcilers.model import LaunchTemplate

PLACEHOLDERS = ("http_port", "https_port", "api_port", "p2p_port", "cache_limit_gb")
ENGINE_FLAGS = (
    "--http-port",
    "{http_port}",
    "--https-port",
    "{https_port}",
    "--api-port",
    "{api_port}",
    "--port",
    "{p2p_port}",
    "--cache-limit",
    "{cache_limit_gb}",
)
_ANDROID_DEFAULTS = (
    "--live-cache-type",
    "memory",
    "--live-mem-cache-size",
    "104857600",
    "--disable-sentry",
    "--log-stdout",
    "--disable-upnp",
)

PRESETS: dict[str, LaunchTemplate] = {
    "acestream-http-proxy": LaunchTemplate(
        preset="acestream-http-proxy",
        entrypoint=("/usr/bin/catatonit", "--", "/app/start-engine"),
        command=(
            "--client-console",
            "--bind-all",
            "--http-port={http_port}",
            "--https-port={https_port}",
            "--api-port={api_port}",
            "--port={p2p_port}",
            "--cache-limit={cache_limit_gb}",
        ),
    ),
    "jopsis": LaunchTemplate(
        preset="jopsis",
        env={"ACESTREAM_ARGS": "--client-console --bind-all " + " ".join(ENGINE_FLAGS)},
    ),
    "jopsis-arm": LaunchTemplate(
        preset="jopsis-arm",
        command=("python", "main.py", "--bind-all", "--client-console", *_ANDROID_DEFAULTS, *ENGINE_FLAGS),
    ),
    "aceserve": LaunchTemplate(
        preset="aceserve",
        command=("python", "main.py", "--bind-all", *_ANDROID_DEFAULTS, *ENGINE_FLAGS),
    ),
}
CHOICES = ("auto", *PRESETS, "custom")
CUSTOM_KEYS = ("entrypoint", "command", "env")


def preset_for_image(image: str) -> str | None:
    """The family of a known image name, or None when the name says nothing certain."""
    ref = image.lower().split("@", 1)[0]  # a digest pins the image, it does not name it
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    if name.endswith("/acestream-http-proxy") or name == "acestream-http-proxy":
        return "acestream-http-proxy"
    if name.endswith("/aceserve") or name.endswith("krinkuto11/acestream"):
        return "aceserve"
    if name.endswith("jopsis/acestream"):
        if tag.startswith("x64"):
            return "jopsis"
        if re.match(r"arm(32|64)-v", tag):
            return "jopsis-arm"
        if re.search(r"-(amd64|arm32|arm64)$", tag):
            return "aceserve"  # jopsis publishes its AceServe builds under this name too
    return None


def _strings(v: Any) -> tuple[str, ...] | None:
    """A command line may carry a credential (`--access-token X`): a message names the entry at
    fault, never a value."""
    if v is None:
        return None
    if not isinstance(v, list) or not v:
        raise ValueError(f"expected a non-empty list of strings, got {kind(v)}")
    for index, x in enumerate(v):
        if not isinstance(x, str):
            raise ValueError(f"entry {index}: expected a string, got {kind(x)}")
    return tuple(v)


def _env(v: Any) -> dict[str, str]:
    """An engine's environment may hold credentials: a message names the entry, never a value."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"expected a mapping of names to strings, got {kind(v)}")
    for k, x in v.items():
        if not isinstance(k, str):
            raise ValueError(f"entry {k!r}: a variable's name must be a string")
        if isinstance(x, bool) or not isinstance(x, str | int):
            raise ValueError(f"entry {k!r}: expected a string value, got {kind(x)}")
    return {k: str(x) for k, x in v.items()}


def _preset(v: Any) -> str:
    if v not in CHOICES:
        raise ValueError(f"must be one of {', '.join(CHOICES)}, got {v!r}")
    return str(v)


def _check_placeholders(key: str, text: str, where: str) -> None:
    """`where`: how the error names the text (a value may be a secret: it is named by its
    variable or its place in the list, never quoted)."""
    for _, field, spec, conversion in string.Formatter().parse(text):
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            raise SubKeyError(
                key,
                f"unknown placeholder {{{field}}} in {where} (known: "
                + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                + "; write {{ and }} for literal braces)",
            )


def _template(v: dict[str, Any]) -> LaunchTemplate:
    """`engines.launch` as written: `preset` (default auto), and for `custom` the template."""
    preset = v["preset"]
    given = [k for k in CUSTOM_KEYS if v[k] not in (None, {})]
    if preset != "custom":
        if given:
            raise SubKeyError(
                given[0],
                f"only for preset: custom (preset {preset} has its own "
                "template); set preset: custom to write your own",
            )
        return LaunchTemplate(preset=preset)
    if not given:
        raise SubKeyError("preset", "preset custom needs at least one of entrypoint, command, env")
    for key in ("entrypoint", "command"):
        for index, text in enumerate(v[key] or ()):
            _check_placeholders(key, text, f"entry {index}")
    for name, text in v["env"].items():
        _check_placeholders("env", text, f"the value of {name}")
    return LaunchTemplate(preset="custom", entrypoint=v["entrypoint"], command=v["command"], env=v["env"])


LAUNCH = Section(
    {
        "preset": ("auto", _preset),
        "entrypoint": (None, _strings),
        "command": (None, _strings),
        "env": ({}, _env),
    },
    then=_template,
)


def resolve_launch(written: LaunchTemplate, image: str) -> LaunchTemplate | None:
    """The template in force: a preset's own, the image's family for `auto` (None when the image
    is not one the daemon knows), or the custom one as written."""
    if written.preset == "custom":
        return written
    preset = preset_for_image(image) if written.preset == "auto" else written.preset
    return PRESETS[preset] if preset is not None else None


def render(template: LaunchTemplate, values: Mapping[str, int]) -> LaunchTemplate:
    """The template with every placeholder filled in for one engine."""

    def fill(text: str) -> str:
        return text.format_map(values)

    return LaunchTemplate(
        preset=template.preset,
        entrypoint=tuple(fill(t) for t in template.entrypoint) if template.entrypoint else None,
        command=tuple(fill(t) for t in template.command) if template.command else None,
        env={k: fill(v) for k, v in template.env.items()},
    )
