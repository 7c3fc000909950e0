"""What every figure shares: saving as PNG and PDF with the lineage of its store in the files' metadata."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from geomvol.io import atomic_path  # noqa: E402
from geomvol import __version__  # noqa: E402
from geomvol.provenance import git_commit, sha256_tree  # noqa: E402


def save_with_lineage(fig, store_path: str | Path, ds: xr.Dataset, png: str | Path, pdf: str | Path, title: str,
                      other_store: str | Path | None = None) -> None:
    """Write ``fig`` atomically as PNG and PDF carrying their lineage, then close it.

    The lineage (what ``geomvol trace`` reads): the figure's kind (the file's stem), the store it was
    drawn from and that store's sha256 (and the other store's, for a comparison), the config's sha256 and
    the code version; in the PNG as ``geomvol:*`` text chunks, in the PDF as JSON in Keywords (and in
    words in Subject).
    """
    lineage = {
        "figure": Path(png).stem,
        "store": str(store_path),
        "store_sha256": sha256_tree(store_path),
        "config_sha256": ds.attrs["config_sha256"],
        "git_commit": git_commit(),
        "geomvol_version": __version__,
    }
    if other_store is not None:
        lineage.update(other_store=str(other_store), other_store_sha256=sha256_tree(other_store))
    description = f"geomvol figure from store {store_path} (sha256 {lineage['store_sha256']})"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=150, metadata={
            "Title": title, "Description": description, "Source": str(store_path),
            **{f"geomvol:{key}": value for key, value in lineage.items()},
        })
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={
            "Title": title, "Subject": description, "Keywords": json.dumps(lineage, sort_keys=True),
        })
    plt.close(fig)


def finite_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values, for one colour scale shared by several panels."""
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def first_seed(ds: xr.Dataset, seed: int | None) -> int:
    return int(ds["seed"].values[0]) if seed is None else seed
