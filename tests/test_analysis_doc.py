"""The documentation's Python code, run as written: docs/analysis.md on the smoke run's results, docs/notebook.md."""

import pytest
import os
import re

from helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.workflow]


def test_analysis_doc_runs_on_the_smoke_results(smoke_run, capsys):
    text = (ROOT / "docs" / "analysis.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 5
    here = os.getcwd()
    os.chdir(smoke_run)
    try:
        namespace = {}
        for block in blocks:
            exec(compile(block, "docs/analysis.md", "exec"), namespace)
    finally:
        os.chdir(here)
    printed = capsys.readouterr().out
    assert "boundary ratio at epoch 2, block3, plane 0:" in printed
    assert "the study's scripts train first and then save" in printed.lower()
    assert "block pooling: {'block1': [16, 8]" in printed
    assert abs(namespace["by_hand"] - namespace["shown"]) < 1e-9  # a defined number, the same both ways


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_notebook_doc_runs_as_written(tmp_path, capsys, monkeypatch):
    """docs/notebook.md: a torchvision ResNet18 probed on a plane in memory, drawn as the pipeline draws its stores
    (geomvol.figures.draw_planes, draw_blocks: one row of panels per feature map) and with geomvol's plane panel."""
    text = (ROOT / "docs" / "notebook.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 4
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/notebook.md", "exec"), namespace)
    printed = capsys.readouterr().out
    assert ("{'seed': 1, 'epoch': 1, 'block': 2, 'plane': 1, 'v': 9, 'u': 9, 'anchor': 3, 'edge': 2, 'eigenvalue': 2, "
            "'class_pair': 2, 'frame_axis': 2, 'plane_axis': 2} [128, 512]") in printed
    ds = namespace["ds"]
    assert ds["plane_log10_volume"].attrs["units"] == "1" and bool(ds["plane_curvature"].notnull().all())
    for figure in ("planes.png", "blocks.png", "plane.png"):
        assert (tmp_path / figure).read_bytes().startswith(b"\x89PNG")
    assert len(namespace["draw_blocks"](ds).axes) == 2 * 2  # two feature maps, a panel and a colour bar each
