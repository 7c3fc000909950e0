"""``geomvol trace PATH``: walk a figure, store, checkpoint or data set back to its config and raw data.

Every output records the sha256 of what it was made from: a figure (PNG text chunks, PDF metadata) its
store; the measures store the volume store; the volume store each probe store, the prepared data set and
the config; a probe store its checkpoint; the training manifest and each checkpoint the data set (and a
python model's checkpoint the source file of its factory); the data set's manifest the data set and every
raw file. :func:`trace` follows those records from ``path`` and
compares each recorded sha256 with the file on disk now, and each checkpoint's lineage (and each probe
store's probe section) with the config the volume store records: a file whose settings disagree with the
store made from it is DISAGREES, as a changed one is CHANGED. Tracing imports no torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from geomvol.config import checkpoint_lineage, config_sha256, imported_lineage, result_config
from geomvol.errors import GeomvolError
from geomvol.integrity import file_record_path
from geomvol.provenance import sha256_of


@dataclass
class Step:
    """One file of the chain: what it is, which rule made it, and how its sha256 compares with the record."""

    kind: str
    path: Path
    rule: str
    depth: int
    recorded: str | None = None  # sha256 recorded by the step below it (None for the traced file itself)
    on_disk: str | None = None  # sha256 now; None if the file is missing
    details: dict = field(default_factory=dict)  # code version, parameters
    disagreement: str | None = None  # how the file's recorded settings differ from the store made from it

    @property
    def status(self) -> str:
        if self.on_disk is None:
            return "MISSING"
        if self.disagreement is not None:
            return "DISAGREES"
        if self.recorded is None:
            return "traced"
        return "ok" if self.recorded == self.on_disk else "CHANGED"


def figure_lineage(path: str | Path) -> dict:
    """The lineage a figure carries: the ``geomvol:*`` PNG text chunks, or the JSON in a PDF's Keywords."""
    path = Path(path)
    if path.suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            text = dict(image.text)
        lineage = {key.removeprefix("geomvol:"): value for key, value in text.items() if key.startswith("geomvol:")}
    elif path.suffix == ".pdf":
        lineage = _pdf_keywords(path.read_bytes())
    else:
        raise GeomvolError(f"{path} is not a PNG or PDF figure")
    if "store" not in lineage:
        raise GeomvolError(f"figure {path} carries no geomvol lineage (was it drawn by geomvol figure?)")
    return lineage


def _pdf_keywords(pdf: bytes) -> dict:
    """The JSON object in a PDF's /Keywords entry (a literal string, as matplotlib writes it)."""
    match = re.search(rb"/Keywords\s*\(((?:[^\\)]|\\.)*)\)", pdf)
    if match is None:
        return {}
    text = re.sub(rb"\\(.)", rb"\1", match.group(1)).decode("latin-1")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {}


def _workdir(path: Path) -> Path:
    """The pipeline's working directory: the one holding the ``results`` directory ``path`` is in."""
    parts = path.resolve().parts
    if "results" in parts:
        return Path(*parts[: len(parts) - 1 - parts[::-1].index("results")])
    return Path.cwd()


class Tracer:
    def __init__(self, start: Path, configfile: Path | None = None):
        self.workdir = _workdir(start)
        self.configfile = configfile
        self.steps: list[Step] = []
        self.seen: set[Path] = set()
        self.expected: dict | None = None  # what the volume store being traced says its inputs were made with

    def here(self, recorded_path: str | Path) -> Path:
        """A path as recorded by the pipeline (relative to its working directory) on disk now."""
        path = Path(recorded_path)
        return path if path.is_absolute() else self.workdir / path

    def show(self, path: Path) -> str:
        """``path`` relative to the working directory when it is inside it."""
        try:
            return str(path.resolve().relative_to(self.workdir))
        except ValueError:
            return str(path)

    def add(self, kind: str, path: Path, rule: str, depth: int, recorded: str | None, **details) -> Step | None:
        """Record a step; None (and nothing recorded) if ``path`` was already traced."""
        return self.record(Step(kind, path, rule, depth, recorded, sha256_of(path), details))

    def record(self, step: Step) -> Step | None:
        """Record a step whose file was hashed (:meth:`add`); None (and nothing recorded) if it was already
        traced, unless it no longer matches what this step recorded."""
        resolved = step.path.resolve()
        first = resolved not in self.seen
        self.seen.add(resolved)
        if first or (step.recorded is not None and step.status != "ok"):
            self.steps.append(step)
        return step if first and step.on_disk is not None else None

    def figure(self, path: Path, depth: int = 0) -> None:
        lineage = figure_lineage(path)
        kind = lineage.get("figure", path.stem)
        rule = {"compare": "figure_compare", "measures": "figure_measures", "profiles": "figure_measures"}.get(kind, "figure")
        self.add("figure", path, rule, depth, None, code=lineage.get("git_commit", "not recorded"),
                 params=f"figure {kind}, config sha256 {lineage.get('config_sha256', 'not recorded')}")
        self.store(self.here(lineage["store"]), depth + 1, lineage.get("store_sha256"))
        if "other_store" in lineage:  # a comparison: the experiment drawn beside
            self.store(self.here(lineage["other_store"]), depth + 1, lineage["other_store_sha256"])

    def store(self, path: Path, depth: int = 0, recorded: str | None = None) -> None:
        from geomvol.store import is_zip_store, open_store

        probe = is_zip_store(path)
        if not path.exists() or (not probe and not (path / "zarr.json").exists()):
            self.add("probe store" if probe else "store", path, "probe" if probe else "combine_probes", depth, recorded)
            return
        ds = open_store(path, verify="none")
        attrs = ds.attrs
        if "source_store" in attrs:  # the measures store
            step = self.add("measures store", path, "measure", depth, recorded, code=attrs.get("git_commit"),
                            params=f"measures {attrs.get('measures_config')}")
            if step is not None:
                self.store(self.here(attrs["source_store"]), depth + 1, attrs["source_store_sha256"])
                if "compared_store" in attrs:  # probe.compare_with: the experiment whose agreement it measured
                    self.store(self.here(attrs["compared_store"]), depth + 1, attrs["compared_store_sha256"])
            return
        if probe:
            step = self.add("probe store", path, "probe", depth, recorded, code=attrs.get("git_commit", "not recorded"),
                            params=f"probe {attrs.get('probe_config', 'not recorded')}")
            if step is not None:
                if self.expected is not None and "probe_config" in attrs:
                    expected = {key: value for key, value in self.expected["config"]["probe"].items() if key != "epochs"}
                    step.disagreement = _differences(json.loads(attrs["probe_config"]), expected, "probe",
                                                     self.expected["store"])
                self.follow(ds, "checkpoint", self.checkpoint, depth + 1)
            return
        step = self.add("store", path, "combine_probes", depth, recorded, code=attrs.get("git_commit"),
                        params=f"experiment {attrs.get('experiment')}, config sha256 {attrs.get('config_sha256')}")
        if step is None:
            return
        self.config(path, attrs, depth + 1)
        self.expected = {"config": json.loads(attrs["experiment_config"]), "dataset_sha256": attrs.get("dataset_sha256"),
                         "store": self.show(path)}
        if "probe_store_file" in ds.coords:
            self.follow(ds, "probe_store", self.store, depth + 1)
        else:  # a store combined before probe stores were recorded
            self.follow(ds, "checkpoint", self.checkpoint, depth + 1)
        if "dataset_file" in attrs:
            self.dataset(self.here(attrs["dataset_file"]), depth + 1, attrs["dataset_sha256"])

    def follow(self, ds, recorded: str, visit, depth: int) -> None:
        """Visit each file a store records per (seed, epoch) as ``<recorded>_file`` with ``<recorded>_sha256``."""
        for file, sha in zip(ds[f"{recorded}_file"].values.ravel(), ds[f"{recorded}_sha256"].values.ravel()):
            visit(self.here(str(file)), depth, str(sha))

    def config(self, store: Path, attrs: dict, depth: int) -> None:
        """What the experiment's results depend on (``result_config``) as the store recorded it, and (with
        --configfile) as that file says now: run-time settings, measures and figures may differ."""
        recorded = json.loads(attrs["experiment_config"])
        where = f"experiment {attrs['experiment']!r} in the attrs of {self.show(store)}"
        step = Step("config", Path(where), "the config file", depth, attrs["config_sha256"], config_sha256(recorded))
        if self.configfile is not None:
            from geomvol.config import load_config

            current = load_config(self.configfile)["experiments"].get(attrs["experiment"])
            step.path = Path(f"experiment {attrs['experiment']!r} of {self.configfile}")
            step.on_disk = None if current is None else config_sha256(result_config(current))
        step.details["params"] = "resolved experiment config: " + ", ".join(
            f"{key} {json.dumps(recorded[key], sort_keys=True)}" for key in ("seeds", "dataset", "model", "checkpoints")
            if key in recorded)
        self.steps.append(step)

    def checkpoint(self, path: Path, depth: int = 0, recorded: str | None = None) -> None:
        from geomvol.train.checkpoint import checkpoint_record

        try:
            state = checkpoint_record(path)  # read without torch
        except GeomvolError:
            state = None
        if state is not None and "imported_from" in state:
            self.imported_checkpoint(path, state, depth, recorded)
            return
        source = _read_json(file_record_path(path)).get("source")  # the group directory's copy it was published from
        group = self.here(source).parent.parent if source else path.parent.parent / "training"
        manifest = _read_json(group / "manifest.json")
        step = self.add("checkpoint", path, "train (published by publish_checkpoint)", depth, recorded,
                        code=manifest.get("git_commit", "not recorded"))
        if step is None:
            return
        if source:
            entry = next((item for seed in manifest.get("seeds", {}).values() for item in seed["checkpoints"]
                          if group / item["file"] == self.here(source)), {})
            self.add("training record", self.here(source), "extend_training" if group.parent.name == "extended" else
                     "train", depth + 1, entry.get("sha256"))
        state = state or checkpoint_record(path)
        lineage = state["train_spec"]
        step.details["params"] = (f"seed {lineage['seed']}, epoch {state['epoch']}, model {lineage['model']['name']}, "
                                  f"objective {lineage['training']['objective']['name']}")
        if self.expected is not None:
            step.disagreement = self.disagreement_with_store(lineage, state["dataset_sha256"])
        model = lineage["model"]
        if "factory_sha256" in model:  # a python model: the file its factory comes from
            self.model_source(model, depth + 1)
        data = path.parent.parent.parent / "data" / "dataset.pt"
        self.dataset(data, depth + 1, state["dataset_sha256"])

    def imported_checkpoint(self, path: Path, state: dict, depth: int, recorded: str | None) -> None:
        """A checkpoint trained elsewhere, as the import wrote it: the file it came from, the model's source, and
        the data set it was fitted to."""
        lineage, origin = state["train_spec"], state["imported_from"]
        step = self.add("checkpoint", path, "import_checkpoint (trained elsewhere)", depth, recorded,
                        params=f"seed {lineage['seed']}, epoch {state['epoch']}, model {lineage['model']['name']}")
        if step is None:
            return
        if self.expected is not None:
            step.disagreement = self.disagreement_with_store(lineage, state["dataset_sha256"])
        self.add("outside checkpoint", self.here(origin["file"]), "trained elsewhere", depth + 1, origin["sha256"])
        if "factory_sha256" in lineage["model"]:
            self.model_source(lineage["model"], depth + 1)
        self.dataset(path.parent.parent.parent / "data" / "dataset.pt", depth + 1, state["dataset_sha256"])

    def model_source(self, model: dict, depth: int) -> None:
        """The source file of a python model's factory, against the sha256 its checkpoints record."""
        from geomvol.provenance import factory_parts, factory_source

        where, _ = factory_parts(model["factory"])
        try:
            path = self.here(where) if where.endswith(".py") else factory_source(model["factory"])
        except GeomvolError:  # a module no longer installed
            path = Path(where)
        self.add("model source", path, "the model's factory", depth, model["factory_sha256"],
                 params=f"factory {model['factory']}, kwargs {json.dumps(model.get('kwargs', {}), sort_keys=True)}")

    def disagreement_with_store(self, lineage: dict, dataset_sha256: str) -> str | None:
        """How a checkpoint's lineage differs from what the volume store being traced was made with (its
        ``experiment_config``: the seeds, model and training section), or None."""
        config, store = self.expected["config"], self.expected["store"]
        if lineage["seed"] not in config["seeds"]:
            return f"seed {lineage['seed']} is not among the seeds {config['seeds']} that {store} records"
        if self.expected["dataset_sha256"] is not None and dataset_sha256 != self.expected["dataset_sha256"]:
            return f"it was trained on another data set (sha256 {dataset_sha256}) than {store} records"
        if "checkpoints" in config:  # trained elsewhere
            expected = imported_lineage(config, lineage["seed"])
        else:
            expected = checkpoint_lineage({"seed": lineage["seed"], "model": config["model"],
                                           "training": config["training"]})
        return _differences(lineage, expected, "training lineage", store)

    def dataset(self, path: Path, depth: int = 0, recorded: str | None = None) -> None:
        manifest_path = path.with_name("manifest.json")
        manifest = _read_json(manifest_path)
        step = self.add("data set", path, "prepare_dataset", depth, recorded, code=manifest.get("git_commit", "not recorded"),
                        params=f"dataset {json.dumps(manifest.get('spec'), sort_keys=True)}")
        if step is None:
            return
        if "sha256" in manifest:
            self.add("data manifest", path, "prepare_dataset", depth + 1, manifest["sha256"],
                     params=f"as recorded in {manifest_path}")
        raw = manifest.get("raw_files") or {}
        if not raw:
            step.details["raw data"] = "none: drawn from the dataset spec above"
        synthetic = (self.here(raw.get("root", "")) / "geomvol-synthetic.json").exists()
        origin = raw.get("origin") or ("synthesize_dataset" if synthetic else "external (download)")
        files = sorted((raw.get("sha256") or {}).items())
        raw_steps = [Step("raw file", self.here(raw["root"]) / name, origin, depth + 1, sha,
                          sha256_of(self.here(raw["root"]) / name)) for name, sha in files]
        changed = [raw_step for raw_step in raw_steps if raw_step.status != "ok"]
        if len(files) > RAW_FILES_SHOWN:  # an image folder: a count, and the files that changed
            step.details["raw data"] = (f"{len(files)} files under {raw['root']} ({origin}): "
                                        + (f"{len(changed)} changed or missing, listed below" if changed
                                           else "all as recorded"))
            raw_steps = changed
        for raw_step in raw_steps:
            self.record(raw_step)


RAW_FILES_SHOWN = 20  # a data set read from more raw files (an image folder) lists only those that changed


def _differences(found: dict, expected: dict, what: str, store: str) -> str | None:
    """The keys (dotted) whose values differ between a recorded section and what ``store`` records, or None."""
    def flat(value, prefix=""):
        if isinstance(value, dict):
            return {key: item for name, sub in value.items() for key, item in flat(sub, f"{prefix}{name}.").items()}
        return {prefix.rstrip("."): value}

    found, expected = flat(found), flat(expected)
    keys = sorted(key for key in found.keys() | expected.keys() if found.get(key, "<absent>") != expected.get(key, "<absent>"))
    if not keys:
        return None
    shown = ", ".join(f"{key}: {json.dumps(found.get(key, '<absent>'))} here, {json.dumps(expected.get(key, '<absent>'))} "
                      f"in {store}" for key in keys[:5])
    return f"its {what} disagrees with the store made from it: {shown}"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def trace(path: str | Path, configfile: str | Path | None = None) -> list[Step]:
    """The chain of ``path`` (a figure, a volume, measures or probe store, a checkpoint, or a data set);
    with ``configfile``, the experiment's config is compared with that file's too."""
    from geomvol.store import is_zip_store

    path = Path(path)
    if not path.exists():
        raise GeomvolError(f"{path} does not exist")
    tracer = Tracer(path, None if configfile is None else Path(configfile))
    if path.suffix in (".png", ".pdf"):
        tracer.figure(path)
    elif path.suffix == ".pt" and path.name != "dataset.pt":
        tracer.checkpoint(path)
    elif path.name == "dataset.pt":
        tracer.dataset(path)
    elif path.is_dir() or is_zip_store(path):
        tracer.store(path)
    else:
        raise GeomvolError(f"{path}: not a figure, store, checkpoint or data set that geomvol made")
    for step in tracer.steps:
        if step.kind != "config":
            step.path = Path(tracer.show(step.path))
    return tracer.steps


def format_trace(steps: list[Step]) -> str:
    """Three lines per step: what and where, how it was made, and its sha256 against the record."""
    lines = []
    for step in steps:
        indent = "  " * step.depth
        lines.append(f"{indent}{step.kind}: {step.path}  [{step.status}]")
        lines.append(f"{indent}    made by {step.rule}" + "".join(
            f"; {key} {value}" for key, value in step.details.items() if value is not None))
        if step.disagreement is not None:
            lines.append(f"{indent}    {step.disagreement}")
        if step.status in ("ok", "DISAGREES") and step.recorded in (None, step.on_disk):
            lines.append(f"{indent}    sha256 {step.on_disk}" + (" (as recorded downstream)" if step.recorded else ""))
        elif step.status == "traced":
            lines.append(f"{indent}    sha256 {step.on_disk}")
        else:
            lines.append(f"{indent}    sha256 recorded downstream {step.recorded}")
            lines.append(f"{indent}    sha256 now                 {step.on_disk or '- (missing)'}")
    return "\n".join(lines)
