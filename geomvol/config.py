"""Experiment configuration: schema validation, defaults and schedule checks.

The pipeline's config (``config.yaml``) is checked here before Snakemake
schedules any job: first against the JSON Schema in
``workflow/schemas/config.schema.yaml`` (types, ranges, unknown keys; defaults
are filled in), then against the rules a schema cannot state (sorted epochs,
probe epochs that are saved).  Every error names the config key.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from geomvol.errors import ConfigError

DEFAULT_SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


# Feature maps of each model, by name (kept torch-free so the Snakefile loads fast;
# tests check it against the models' own ``feature_maps()``).
FEATURE_MAPS = {"shallow": ("hidden",)}


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<config>"


def _validator_with_defaults(schema: dict):
    """A Draft 2020-12 validator that fills in ``default`` values as it validates."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def load_schema(path: str | Path = DEFAULT_SCHEMA) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def saved_epochs(training: dict) -> list[int]:
    """The epochs after which training writes a checkpoint.

    Epoch 0 (the initialisation) and the last epoch are always included.
    """
    last = training["epochs"]
    schedule = training["save_epochs"]
    if isinstance(schedule, dict):
        epochs = set(range(0, last + 1, schedule["every"]))
    else:
        epochs = set(schedule)
    return sorted(epochs | {0, last})


def _check_experiment(name: str, experiment: dict) -> None:
    where = ("experiments", name)
    training = experiment["training"]
    schedule = training["save_epochs"]
    if isinstance(schedule, list):
        key = _key(where + ("training", "save_epochs"))
        if any(b <= a for a, b in zip(schedule, schedule[1:])):
            raise ConfigError(f"config key {key}: epochs must be strictly increasing, got {schedule}")
        if schedule[-1] > training["epochs"]:
            raise ConfigError(
                f"config key {key}: epoch {schedule[-1]} is after the last training epoch "
                f"(training.epochs = {training['epochs']})"
            )
    saved = saved_epochs(training)
    probe = experiment["probe"]
    if probe["epochs"] is None:
        probe["epochs"] = saved
    else:
        key = _key(where + ("probe", "epochs"))
        epochs = probe["epochs"]
        if any(b <= a for a, b in zip(epochs, epochs[1:])):
            raise ConfigError(f"config key {key}: epochs must be strictly increasing, got {epochs}")
        never = [e for e in epochs if e not in saved]
        if never:
            raise ConfigError(
                f"config key {key}: epoch(s) {never} are never saved; saved epochs are {saved} "
                f"(set training.save_epochs)"
            )
    names = FEATURE_MAPS[experiment["model"]["name"]]
    if probe["feature_map"] not in names:
        raise ConfigError(
            f"config key {_key(where + ('probe', 'feature_map'))}: model {experiment['model']['name']!r} "
            f"has no feature map {probe['feature_map']!r}; it has {list(names)}"
        )
    grid = probe["grid"]
    if grid["high"] <= grid["low"]:
        raise ConfigError(
            f"config key {_key(where + ('probe', 'grid'))}: high ({grid['high']}) must exceed low ({grid['low']})"
        )
    dataset = experiment["dataset"]
    if dataset["high"] <= dataset["low"]:
        raise ConfigError(
            f"config key {_key(where + ('dataset',))}: high ({dataset['high']}) must exceed low ({dataset['low']})"
        )
    limit = min(2, experiment["model"]["width"])  # grid probes: d = 2 inputs
    if probe["top_k"] is not None and probe["top_k"] > limit:
        raise ConfigError(
            f"config key {_key(where + ('probe', 'top_k'))}: {probe['top_k']} exceeds min(n, d) = {limit} "
            f"(d = 2 grid inputs, n = model.width)"
        )
    if probe["metric"] == "subspace" and probe["top_k"] is not None:
        raise ConfigError(
            f"config key {_key(where + ('probe', 'top_k'))}: top_k applies to metric 'full' only"
        )


def resolve_config(config: dict, schema: dict | str | Path = DEFAULT_SCHEMA) -> dict:
    """Validate a pipeline config and return a resolved copy.

    The copy has every default filled in and ``probe.epochs`` expanded to an
    explicit list.  Raises :class:`ConfigError` naming the first bad key.
    """
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    resolved = copy.deepcopy(dict(config))
    validator = _validator_with_defaults(schema)
    errors = sorted(validator.iter_errors(resolved), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        error = errors[0]
        # oneOf failures: report the most specific sub-error.
        best = jsonschema.exceptions.best_match([error])
        raise ConfigError(f"config key {_key(best.absolute_path)}: {best.message}")
    for name, experiment in resolved["experiments"].items():
        _check_experiment(name, experiment)
    return resolved


def load_config(path: str | Path, schema: dict | str | Path = DEFAULT_SCHEMA) -> dict:
    """Read a YAML config file and resolve it (see :func:`resolve_config`)."""
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    return resolve_config(config, schema)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def config_sha256(value: Any) -> str:
    """sha256 of the canonical JSON of a (resolved) config section."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
