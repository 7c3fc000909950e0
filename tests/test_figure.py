from PIL import Image

from geomvol.config import result_config
from geomvol.figures import plot_volume_grid
from geomvol.provenance import sha256_tree
from geomvol.stages import combine_probes, probe


def test_figure_carries_its_store_and_checksum(trained, tmp_path):
    experiment = trained["experiment"]
    paths = []
    for checkpoint in trained["checkpoints"]:
        paths.append(tmp_path / f"{checkpoint.stem}.zarr")
        probe([checkpoint], trained["data"], experiment["probe"], paths[-1])
    store = tmp_path / "volume.zarr"
    combine_probes(paths, "tiny", result_config(experiment), trained["data"], trained["manifest"], store)
    plot_volume_grid(store, tmp_path / "volume.png", tmp_path / "volume.pdf")

    checksum = sha256_tree(store)
    with Image.open(tmp_path / "volume.png") as image:
        assert image.text["Source"] == str(store)
        assert image.text["geomvol:store_sha256"] == checksum
        width, height = image.size
    assert width > 2.5 * height  # three panels side by side
    pdf = (tmp_path / "volume.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and checksum.encode() in pdf


def test_tree_checksum_ignores_the_snakemake_marker(tmp_path):
    (tmp_path / "a").write_text("x")
    before = sha256_tree(tmp_path)
    (tmp_path / ".snakemake_timestamp").write_text("")
    assert sha256_tree(tmp_path) == before
    (tmp_path / "b").write_text("y")
    assert sha256_tree(tmp_path) != before
