"""The config checks that read the data: a data root has the files torchvision reads, and every plane
and line names distinct, non-collinear images that its prepared split has.

They run once, before any job (the Snakefile's main process, ``geomvol check-config``), after the
torch-free checks of :func:`geomvol.config.resolve_config`; torch is imported only for a config with
image experiments. Errors are :class:`ConfigError` naming the config key.
"""

from __future__ import annotations

from geomvol.catalogue import IMAGE_DATASETS, TORCHVISION_DATASETS
from geomvol.errors import ConfigError, DataError


def check_config_data(config: dict) -> dict:
    """Check the data of every image experiment of a resolved config (``resolve_config``'s output); return it.
    A root that torchvision will download (``download: true``, files missing) is left to the prepare job."""
    for name, experiment in config["experiments"].items():
        if experiment["dataset"]["name"] in IMAGE_DATASETS:
            check_experiment_data(f"experiments.{name}", experiment)
    return config


def check_experiment_data(key: str, experiment: dict) -> None:
    """The data checks of one resolved image experiment, at config key ``key``."""
    from geomvol.data.anchors import check_anchor_images, resolve_anchors
    from geomvol.data.images import check_root, missing_files, prepared_splits
    from geomvol.data.prepare import split_tensors
    from geomvol.settings import AnchorChoice

    dataset, probe = experiment["dataset"], experiment["probe"]
    if dataset["name"] in TORCHVISION_DATASETS and dataset["synthetic"] is None:
        if dataset["download"] and missing_files(dataset["name"], dataset["root"]):
            return
        try:
            check_root(dataset["name"], dataset["root"])
        except DataError as error:
            raise ConfigError(f"config key {key}.dataset.root: {error}") from None
    used = {entry["split"] for kind in ("planes", "lines") for entry in probe[kind]}
    data = prepared_splits(dataset, {"train", "test"} if "all" in used else used)
    splits = {split: split_tensors(data, split) for split in used}  # split -> (images, labels, source indices)
    for kind in ("planes", "lines"):
        where = f"{key}.probe.{kind}"
        choices = tuple(AnchorChoice.from_entry(entry) for entry in probe[kind])
        anchors = resolve_anchors(choices, {split: labels for split, (_, labels, _) in splits.items()},
                                  data["classes"], where)
        check_anchor_images(anchors, [splits[choice.split][0][indices] for choice, indices in zip(choices, anchors)],
                            where)
