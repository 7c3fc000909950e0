"""What every figure shares: saving as PNG and PDF with the lineage of its store in the files' metadata."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from geomvol.io import atomic_path  # noqa: E402
from geomvol.provenance import sha256_tree  # noqa: E402


def save_with_lineage(fig, store_path: str | Path, ds: xr.Dataset, png: str | Path, pdf: str | Path, title: str) -> None:
    """Write ``fig`` atomically as PNG (text chunks) and PDF (Subject, Keywords), naming the store it was
    drawn from, the store's sha256 and the config's; then close it."""
    checksum = sha256_tree(store_path)
    description = f"geomvol figure from store {store_path} (sha256 {checksum})"
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=150, metadata={
            "Title": title,
            "Description": description,
            "Source": str(store_path),
            "geomvol:store_sha256": checksum,
            "geomvol:config_sha256": ds.attrs["config_sha256"],
        })
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={
            "Title": title,
            "Subject": description,
            "Keywords": f"store={store_path} store_sha256={checksum} config_sha256={ds.attrs['config_sha256']}",
        })
    plt.close(fig)


def finite_range(values: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values, for one colour scale shared by several panels."""
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def first_seed(ds: xr.Dataset, seed: int | None) -> int:
    return int(ds["seed"].values[0]) if seed is None else seed
