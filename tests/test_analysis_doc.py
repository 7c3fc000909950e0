"""docs/analysis.md's Python code, run as written on the smoke run's results."""

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
