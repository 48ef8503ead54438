"""Experiment configuration: YAML files checked against one JSON schema.

The schema (``ihdm/config.schema.yaml``) holds every key with its default; the
Snakemake workflow validates against the same file. ``load_config`` returns a plain
nested ``dict`` with all defaults filled in, or raises :class:`ConfigError` naming the
offending key.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import UserError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


class ConfigError(UserError, ValueError):
    """A configuration value is missing, unknown, mistyped or out of range."""


@cache
def schema() -> dict:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _fill_defaults(node: dict, sch: dict) -> None:
    for key, sub in sch.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(node[key], sub)


def _is_integer_schema(sub: dict) -> bool:
    kind = sub.get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def _coerce_integers(node: dict, sch: dict) -> None:
    """Integral floats (5.0) at integer keys become ints, so that a key has one type
    wherever it is recorded (JSON schema accepts 5.0 as an integer, Python APIs do not)."""
    for key, sub in sch.get("properties", {}).items():
        value = node.get(key)
        if isinstance(value, float) and value.is_integer() and _is_integer_schema(sub):
            node[key] = int(value)
        elif isinstance(value, list) and _is_integer_schema(sub.get("items", {})):
            node[key] = [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]
        elif isinstance(value, dict) and sub.get("type") == "object":
            _coerce_integers(value, sub)


def _key_name(err: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    if err.validator == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        return ".".join(filter(None, [path, extra[0] if extra else ""]))
    if err.validator == "required":
        return path
    return path or "<top level>"


def validate(cfg: dict, source: str = "config") -> dict:
    """Fill defaults into ``cfg`` (in place) and check it; returns ``cfg``."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(cfg).__name__}")
    _fill_defaults(cfg, schema())
    _coerce_integers(cfg, schema())
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors:
            key = _key_name(err)
            if err.validator == "additionalProperties":
                lines.append(f"unknown key '{key}'")
            else:
                lines.append(f"key '{key}': {err.message}")
        if len(lines) == 1:
            raise ConfigError(f"{source}: {lines[0]}")
        raise ConfigError(f"{source}: invalid configuration\n  " + "\n  ".join(lines))
    _check_semantics(cfg, source)
    return cfg


def _check_semantics(cfg: dict, source: str) -> None:
    heat, unet, data = cfg["heat"], cfg["unet"], cfg["data"]
    if heat["blur_sigma_max"] <= heat["blur_sigma_min"]:
        raise ConfigError(
            f"{source}: key 'heat.blur_sigma_max' ({heat['blur_sigma_max']}) must exceed "
            f"'heat.blur_sigma_min' ({heat['blur_sigma_min']})"
        )
    _check_network(unet, "unet", data, source)
    if cfg["ddpm"]["unet"]:  # DDPM's own network (unet with ddpm.unet's keys)
        _check_network({**unet, **cfg["ddpm"]["unet"]}, "ddpm.unet", data, source)
    if cfg["ddpm"]["schedule"] == "linear" and cfg["ddpm"]["beta_end"] < cfg["ddpm"]["beta_start"]:
        raise ConfigError(f"{source}: key 'ddpm.beta_end' must not be below 'ddpm.beta_start'")


def _check_network(unet: dict, prefix: str, data: dict, source: str) -> None:
    """The U-Net keys ``unet`` (found at ``prefix``) against the data's size."""
    levels = len(unet["channel_mult"])
    factor = 2 ** (levels - 1)
    if data["resolution"] % factor:
        raise ConfigError(
            f"{source}: key 'data.resolution' ({data['resolution']}) cannot be halved "
            f"{levels - 1} times by a U-Net with {prefix}.channel_mult of {levels} levels; "
            f"use a resolution divisible by {factor} or fewer levels"
        )
    bad = [lvl for lvl in unet["attention_levels"] if lvl > levels]
    if bad:
        raise ConfigError(
            f"{source}: key '{prefix}.attention_levels' names level(s) {bad}, but the U-Net has "
            f"only {levels} levels ({prefix}.channel_mult)"
        )
    if unet["channels"] % 4:
        raise ConfigError(
            f"{source}: key '{prefix}.channels' ({unet['channels']}) must be a multiple of 4 so "
            "that GroupNorm can split every level's width into groups"
        )


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.steps=100"`` -> (["train", "steps"], 100); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, value = text.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"override '{text}': '{key}' is not a dotted key such as train.steps")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        reason = str(exc).splitlines()[0]
        raise ConfigError(f"override '{text}': the value is not valid YAML ({reason})") from None
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-4" as a string; users mean a number
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return path, parsed


def apply_overrides(cfg: dict, overrides: list[str] | None) -> dict:
    for text in overrides or []:
        path, value = parse_override(text)
        node = cfg
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
        node[path[-1]] = value
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """Read a YAML config (or start from defaults when ``path`` is None), apply
    ``key.path=value`` overrides, fill defaults and validate."""
    cfg: dict = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        try:
            with open(path) as fh:
                cfg = yaml.safe_load(fh) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    apply_overrides(cfg, overrides)
    return validate(cfg, source)
