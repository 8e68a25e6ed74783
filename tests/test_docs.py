"""The documentation site builds from the docstrings and the notebooks without a single warning."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_docs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    page = (site / "api" / "signature" / "index.html").read_text()
    # The rendered reference states the formulas of the docstrings.
    assert "sqrt(E[phi&#39;(X)^2])" in page or "sqrt(E[phi'(X)^2])" in page
    assert "Tail-compensated" in page or "tail-compensated" in page
    # The notebooks are rendered with the outputs they are committed with (not executed).
    for nb in NOTEBOOKS:
        page = (site / "notebooks" / nb.stem / "index.html").read_text()
        assert "jp-OutputArea-output" in page, nb.name
        assert "data:image/png" in page, nb.name
        assert (site / "notebooks" / nb.stem / nb.name).is_file(), nb.name
    shutil.rmtree(site)


def _nav_paths(entries):
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            yield from _nav_paths(value)
        else:
            yield value


def test_every_notebook_is_in_the_docs():
    """docs/notebooks links to notebooks/, and each notebook is in the nav and the index."""
    yaml = pytest.importorskip("yaml")
    assert NOTEBOOKS
    link = ROOT / "docs" / "notebooks"
    assert link.is_symlink() and link.resolve() == (ROOT / "notebooks").resolve()
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = set(_nav_paths(config["nav"]))
    index = (ROOT / "docs" / "notebooks.md").read_text()
    for nb in NOTEBOOKS:
        assert f"notebooks/{nb.name}" in nav, nb.name
        assert f"(notebooks/{nb.name})" in index, nb.name
    assert {p for p in nav if p.endswith(".ipynb")} == {f"notebooks/{nb.name}" for nb in NOTEBOOKS}
