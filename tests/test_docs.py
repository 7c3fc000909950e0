"""The README is one page whose links lead somewhere; the documentation site builds strictly (a broken link,
anchor or API reference fails), its API pages generated from the docstrings."""

import re
import subprocess
import sys

import pytest

from helpers import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_one_page_and_its_links_lead_to_files():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    targets = [target for target in LINK.findall(text) if "://" not in target]
    assert "docs/index.md" in targets and "docs/images/sinusoid-volume.png" in targets
    missing = [target for target in targets if not (ROOT / target.split("#")[0]).is_file()]
    assert not missing, f"README links to files that do not exist: {missing}"


@pytest.mark.slow
def test_the_documentation_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    geometry = (site / "reference" / "geometry" / "index.html").read_text()
    # the API page holds the docstrings, their Sphinx roles and math blocks turned into Markdown
    assert "log_volume_and_singular_values" in geometry and "J^\\top J" in geometry
    assert ":func:" not in geometry and ":math:" not in geometry and ".. math::" not in geometry
    assert (site / "analysis" / "index.html").is_file() and (site / "images" / "sinusoid-volume.png").is_file()
