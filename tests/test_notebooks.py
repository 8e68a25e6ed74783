"""The tutorial notebooks run top to bottom, and the numbers they print hold.

Each notebook in ``notebooks/`` is executed with nbclient on a temporary copy
(the committed file is never touched), with a time limit per cell, in a
``python3`` kernel started by *this* interpreter (so it sees the same jaxsig,
whatever ``python`` on ``PATH`` or a user-wide kernelspec would say). The test
fails on any cell error, then parses the notebook's last cell (its summary) and
checks the key numbers against the tolerances stated in the notebook's prose.

A second, cheap test checks that the committed notebooks are stored executed and
clean: outputs present, no errors, no stderr, no absolute paths, small PNGs.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT = 300  # seconds; each notebook takes about a minute of CPU in total


class _ThisInterpreterKernel(KernelManager):
    """The ``python3`` kernel, launched with ``sys.executable`` (registers nothing globally)."""

    @property
    def kernel_spec(self):
        return KernelSpec(
            argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            display_name="Python 3",
            language="python",
        )


def _execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    """Execute a temporary copy of ``notebooks/name``; raises CellExecutionError on a failing cell."""
    path = tmp_path / name
    shutil.copy(NOTEBOOKS / name, path)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        kernel_manager_class=_ThisInterpreterKernel,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return nb


def _stdout(cell) -> str:
    return "".join(
        o.get("text", "")
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stdout"
    )


def _number(text: str, pattern: str) -> float:
    m = re.search(pattern, text)
    assert m, f"pattern {pattern!r} not found in the summary:\n{text}"
    return float(m.group(1))


def _summary(nb) -> str:
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"cell failed: {errors[0].get('ename')}: {errors[0].get('evalue')}"
    return _stdout(code[-1])


FLOAT = r"([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)"


@pytest.mark.slow
def test_signature_tour(tmp_path):
    s = _summary(_execute("01_signature_tour.ipynb", tmp_path))
    # Closed forms of SPEC, to near machine precision (float64).
    assert _number(s, r"closed forms: worst absolute error " + FLOAT) < 1e-12
    # 32 Monte Carlo z-scores (2e6 samples each): |z| < 5 fails with probability ~1e-5.
    assert _number(s, r"largest \|z\| = " + FLOAT) < 5.0
    # tv and c against scipy.integrate.quad (tolerances 1e-13).
    assert _number(s, r"worst absolute difference " + FLOAT) < 1e-10
    # Variance map against NumPy networks of width 1000: mean ratio within 5 standard errors of 1.
    m = re.search(r"simulated / predicted = " + FLOAT + r" \+- " + FLOAT, s)
    assert m, s
    assert abs(float(m.group(1)) - 1.0) < 5 * float(m.group(2))
    # chi1 against tangent propagation in width-1000 networks (30 layers x 4 inputs): a few percent.
    assert _number(s, r"chi1 vs simulation: largest relative deviation " + FLOAT) < 0.05


@pytest.mark.slow
def test_design(tmp_path):
    s = _summary(_execute("02_design.ipynb", tmp_path))
    assert "design feasible: True; confirmed independently: True" in s
    # Asymptotes by hand, c in closed form, m2 / g2 / tv by scipy quad.
    assert _number(s, r"worst difference " + FLOAT) < 1e-10
    # Poincare makes m2 == 1, g2 <= 0.5, m1 == 0 impossible: the design must say so.
    assert "contradictory targets: feasible = False" in s


@pytest.mark.slow
def test_flax(tmp_path):
    s = _summary(_execute("03_flax.ipynb", tmp_path))
    # Variances at initialisation against the variance map (16 networks): within 5 standard errors.
    assert _number(s, r"largest \|z\| " + FLOAT) < 5.0
    # A six-layer MLP on digits, 15 epochs: well above chance (0.1); typically ~0.96.
    assert _number(s, r"jaxsig init: test accuracy " + FLOAT) > 0.9
    # The regularised activation keeps m2 == 1 and g2 <= 0.8 to within lam = 100's compromise.
    assert _number(s, r"\|m2 - 1\| = " + FLOAT) < 0.01
    assert _number(s, r"g2 = " + FLOAT) < 0.81
    # The regulariser (float32 parameters) against its value rebuilt from scipy quad.
    assert _number(s, r"largest relative difference " + FLOAT) < 1e-3


@pytest.mark.parametrize("name", ["01_signature_tour.ipynb", "02_design.ipynb", "03_flax.ipynb"])
def test_committed_notebook_is_executed_and_clean(name):
    path = NOTEBOOKS / name
    assert path.stat().st_size < 1_500_000, "keep committed notebooks small (PNG figures at dpi ~80)"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and sum(c.cell_type == "markdown" for c in nb.cells) >= len(code) // 2, "prose between cells"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), "stored outputs must come from one run, top to bottom"
    images = 0
    for cell in code:
        for out in cell.outputs:
            assert out.output_type != "error", f"stored error output in {name}"
            assert not (out.output_type == "stream" and out.name == "stderr"), f"stderr (warnings) stored in {name}"
            if "image/png" in out.get("data", {}):
                png = base64.b64decode(out.data["image/png"])
                assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 400_000
                images += 1
    assert images >= 1, "figures inline"
    text = json.dumps([c.get("outputs", []) for c in code])
    for marker in ("/work/", "/tmp/", "/home/", "/root/", "/Users/", "\\\\Users\\\\", "\\u001b["):
        assert marker not in text, f"machine-specific output or ANSI escapes ({marker!r}) stored in {name}"
