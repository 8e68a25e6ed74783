"""The ``jaxsig`` command, end to end: tables, the report folder, errors.

Commands run in-process through ``jaxsig.cli.main`` (and twice as a real
``python -m jaxsig`` subprocess). Numbers in the output are checked against
closed forms; files against their formats (PNG signature and size, JSON and
CSV parsed back).
"""

import csv
import io
import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import jaxsig
from jaxsig.app import _common, cli

SQRT2PI = math.sqrt(2 * math.pi)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def no_compilation_cache(monkeypatch):
    # In-process runs must not point the test process's JAX at a disk cache.
    monkeypatch.setenv("JAXSIG_CACHE_DIR", "none")


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(capsys, *argv, match):
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxsig: error: ")
    assert match in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


# --- jaxsig table ----------------------------------------------------------------------


def test_table_text_default_sigma(capsys):
    code, out, err = run(capsys, "table", "-a", "relu,tanh,x^2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Integral signature at sigma = 1, mu = 0"
    assert lines[1].split() == ["activation", *jaxsig.FIELDS]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    relu = [float(v) for v in rows["relu"]]
    expected = [1 / SQRT2PI, 0.5, 1 / math.sqrt(2), 0.5, 0.25 - 1 / (2 * math.pi), 1, 0, 1, 0]
    np.testing.assert_allclose(relu, expected, rtol=1e-5, atol=1e-12)  # 6 significant digits
    assert rows["tanh"][0] == "0" and rows["tanh"][7] == "2"
    assert rows["x^2"][5:] == ["inf", "-inf", "inf", "inf"]


def test_table_csv_json_markdown_agree(capsys):
    args = ("table", "-a", "relu,tanh,x^2")
    code, out, _ = run(capsys, *args, "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["activation", "sigma", "mu", *jaxsig.FIELDS]
    assert [r["activation"] for r in rows] == ["relu", "tanh", "x^2"]
    assert float(rows[0]["m1"]) == pytest.approx(1 / SQRT2PI, rel=1e-13)  # full precision
    assert float(rows[1]["c"]) == pytest.approx(2 * math.log(2), rel=1e-8)
    assert math.isinf(float(rows[2]["alpha_minus"])) and float(rows[2]["alpha_minus"]) < 0

    code, out, _ = run(capsys, *args, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert [d["activation"] for d in data] == ["relu", "tanh", "x^2"]
    assert data[0]["g2"] == pytest.approx(1 / math.sqrt(2), rel=1e-13)
    assert (data[2]["alpha_plus"], data[2]["alpha_minus"], data[2]["tv"]) == ("inf", "-inf", "inf")

    code, out, _ = run(capsys, *args, "--format", "markdown")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "| activation | " + " | ".join(jaxsig.FIELDS) + " |"
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert len(lines) == 2 + 3


def test_table_several_sigma_and_mu(capsys):
    code, out, _ = run(capsys, "table", "-a", "relu", "--sigma", "0.5,2", "--mu", "0,0.5", "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(float(r["sigma"]), float(r["mu"])) for r in rows] == [(0.5, 0), (0.5, 0.5), (2, 0), (2, 0.5)]
    for r in rows:
        s, m = float(r["sigma"]), float(r["mu"])
        # E[relu(mu + s Z)] = mu Phi(mu/s) + s phi(mu/s)
        m1 = m * 0.5 * math.erfc(-m / s / math.sqrt(2)) + s * math.exp(-0.5 * (m / s) ** 2) / SQRT2PI
        assert float(r["m1"]) == pytest.approx(m1, rel=1e-12)


def test_table_float32():
    # A fresh process: the CLI is an application, and precision is process state.
    proc = _subprocess("table", "-a", "relu", "--no-x64", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    g2 = json.loads(proc.stdout)[0]["g2"]
    assert g2 == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert g2 != pytest.approx(1 / math.sqrt(2), rel=1e-12)  # really float32


def test_precision_setting_is_restored(capsys):
    assert_usage_error(capsys, "table", "-a", "nosuch", "--no-x64", match="unknown activation")
    assert jax.config.jax_enable_x64  # the test session's setting is back


# --- User functions ----------------------------------------------------------------------


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_acts_cli.py").write_text(
        textwrap.dedent("""
        import jax.numpy as jnp
        import jaxsig

        def scaled_tanh(x, params):
            return params["a"] * jnp.tanh(x)

        def cube(x):
            return x * x * x

        def softmax(x):
            return jnp.exp(x) / jnp.sum(jnp.exp(x))

        # The same function as an Activation with default parameters.
        tanh3 = jaxsig.Activation("tanh3", scaled_tanh, {"a": 3.0}, (), "3 tanh(x)")
        not_a_function = 3
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_acts_cli"


def test_user_function_with_params(capsys, user_module):
    code, out, err = run(capsys, "table", "-a", f"tanh,{user_module}:scaled_tanh", "--param", "a=2", "--format", "json")
    assert code == 0, err
    tanh, scaled = json.loads(out)
    assert scaled["activation"] == "scaled_tanh"
    for f in ("g1", "g2", "tv", "c"):  # all linear in the amplitude a
        assert scaled[f] == pytest.approx(2 * tanh[f], rel=1e-10)
    assert scaled["m2"] == pytest.approx(4 * tanh["m2"], rel=1e-12)


def test_user_activation_object_and_its_params(capsys, user_module):
    code, out, err = run(capsys, "table", "-a", f"tanh,{user_module}:tanh3", "--format", "json")
    assert code == 0, err
    tanh, tanh3 = json.loads(out)
    assert tanh3["activation"] == "tanh3"  # the Activation's own name
    assert tanh3["g1"] == pytest.approx(3 * tanh["g1"], rel=1e-12)  # its default a = 3
    code, out, err = run(capsys, "table", "-a", f"{user_module}:tanh3", "--param", "a=0.5", "--format", "json")
    assert code == 0, err
    assert json.loads(out)[0]["g1"] == pytest.approx(0.5 * tanh["g1"], rel=1e-12)  # overridden


def test_user_function_errors(capsys, user_module):
    assert_usage_error(capsys, "table", "-a", "no_such_module_xyz:f", match="cannot import module 'no_such_module_xyz'")
    assert_usage_error(capsys, "table", "-a", f"{user_module}:nope", match="has no attribute 'nope'")
    assert_usage_error(capsys, "table", "-a", f"{user_module}:not_a_function", match="not a callable")
    assert_usage_error(capsys, "table", "-a", f"{user_module}:softmax", match="elementwise")
    assert_usage_error(capsys, "table", "-a", "os.path;rm:x", match="package.module:function")
    # A parameter that no chosen activation takes: cube(x) has none.
    assert_usage_error(capsys, "table", "-a", f"{user_module}:cube", "--param", "a=1", match="parameter(s) 'a'")


# --- Usage errors ----------------------------------------------------------------------------


def test_usage_errors(capsys, tmp_path):
    assert_usage_error(capsys, "table", "-a", "nosuch", match="unknown activation 'nosuch'")
    assert_usage_error(capsys, "table", "-a", "gelu_exakt", match="Did you mean")
    assert_usage_error(capsys, "table", "--sigma", "abc", match="argument --sigma: expected a number, got 'abc'")
    assert_usage_error(capsys, "table", "--sigma", "-1", match="expected a positive number")
    assert_usage_error(capsys, "table", "--sigma", "1,,2", match="comma-separated")
    assert_usage_error(capsys, "table", "--mu", "nan", match="finite")
    assert_usage_error(capsys, "table", "--format", "xml", match="invalid choice")
    assert_usage_error(capsys, "table", "--param", "negative_slope", match="NAME=VALUE")
    assert_usage_error(capsys, "table", "--param", "negative_slope=abc", match="--param negative_slope")
    assert_usage_error(capsys, "table", "-a", "relu", "--param", "beta=2", match="no chosen activation")
    assert_usage_error(capsys, "table", "-a", "relu,relu", match="chosen twice")
    assert_usage_error(capsys, "report", "--sigma-num", "0", match="positive integer")
    assert_usage_error(capsys, "report", "--sigma-min", "5", "--sigma-max", "1", match="--sigma-min")
    assert_usage_error(capsys, "report", "--bias-variance", "1", match="--bias-variance")
    assert_usage_error(capsys, "frobnicate", match="invalid choice")
    assert_usage_error(capsys, match="required")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert_usage_error(
        capsys, "report", "-a", "relu", "--out", str(blocker / "sub"), match="cannot write to output folder"
    )
    assert not (blocker.parent / "sub").exists()


def test_figures_without_matplotlib(capsys, tmp_path, monkeypatch):
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, mod, None)  # import fails as if not installed
    # Fails before any computation, and says what to do.
    assert_usage_error(capsys, "report", "-a", "relu", "--out", str(tmp_path / "r"), match="pip install 'jaxsig[cli]'")
    from jaxsig import plotting

    with pytest.raises(ImportError, match=r"jaxsig\[cli\]"):
        plotting.plot_components(np.ones(2), {})


def test_version_and_help(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"jaxsig {jaxsig.__version__}"
    code, out, _ = run(capsys, "report", "--help")
    assert code == 0 and "--sigma-num" in out and "--out" in out


def test_default_activations_resolve():
    args = cli._build_parser().parse_args(["report"])
    names = [a.name for a in _common.activations_from_args(args)]
    assert names[:8] == list(jaxsig.activations.PAPER)
    assert set(names) >= {"elu", "selu", "softplus", "gelu_tanh", "erf", "x^2"}
    assert args.sigma_num == 64 and (args.sigma_min, args.sigma_max) == (0.05, 20.0)
    assert args.x64 is True and str(args.out) == "jaxsig-report"


def test_param_reaches_the_right_activation():
    args = cli._build_parser().parse_args(["table", "-a", "leaky_relu,relu", "-a", "elu", "--param", "alpha=0.5"])
    acts = {a.name: a for a in _common.activations_from_args(args)}
    assert acts["elu"].params == {"alpha": 0.5}
    assert acts["leaky_relu"].params == {"negative_slope": 0.01} and acts["relu"].params is None


# --- jaxsig report ------------------------------------------------------------------------------


def test_report_end_to_end(capsys, tmp_path):
    out_dir = tmp_path / "rep"
    code, out, err = run(capsys, "report", "-a", "relu,tanh,x^2", "--sigma-num", "6", "--out", str(out_dir))
    assert code == 0, err
    # Progress went to stderr, one line per step (not a terminal here).
    assert "[1/6] signature: relu" in err and "figure: shapes.png" in err

    # The printed tables.
    assert "Integral signature at sigma = 1, mu = 0" in out
    assert "Growth class and shape" in out and "Design-principle report card" in out

    def section(title, end=None):
        text = out.split(title)[1]
        text = text.split(end)[0] if end else text
        return {
            ln.split()[0]: ln.split() for ln in text.splitlines() if ln.split()[:1] in (["relu"], ["tanh"], ["x^2"])
        }

    classes = {k: v[1] for k, v in section("Growth class and shape", "Design").items()}
    assert classes == {"relu": "A1", "tanh": "A0", "x^2": "A>1"}
    card_rows = {k: v[-1] for k, v in section("(value, pass/FAIL)", "Wrote").items()}
    assert card_rows == {"relu": "5/6", "tanh": "6/6", "x^2": "0/6"}  # relu fails |m1| <= 0.3 only

    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["components.png", "g2_vs_tv.png", "report.md", "shapes.png", "signature.csv", "signature.json"]
    for name in ("components.png", "g2_vs_tv.png", "shapes.png"):
        data = (out_dir / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert 10_000 < len(data) < 5_000_000, (name, len(data))

    doc = json.loads((out_dir / "signature.json").read_text())
    assert doc["dtype"] == "float64" and doc["card_sigma"] == 1.0 and len(doc["sigma"]) == 6
    np.testing.assert_allclose(doc["sigma"], np.geomspace(0.05, 20, 6), rtol=1e-15)
    acts = {a["name"]: a for a in doc["activations"]}
    assert list(acts) == ["relu", "tanh", "x^2"]
    relu = acts["relu"]
    np.testing.assert_allclose(relu["signature"]["m1"], np.asarray(doc["sigma"]) / SQRT2PI, rtol=1e-12)
    assert relu["at_sigma"]["signature"]["g2"] == pytest.approx(1 / math.sqrt(2), rel=1e-12)
    assert relu["report_card"]["weight_variance"] == pytest.approx(2.0, rel=1e-12)  # He
    assert relu["report_card"]["contraction"]["passed"] is True
    assert relu["report_card"]["bias_mean"]["passed"] is False
    assert relu["classification"]["growth"] == "A1" and relu["classification"]["kinks"] == [0.0]
    assert acts["tanh"]["classification"]["growth"] == "A0"
    assert acts["tanh"]["report_card"]["conditioning"]["value"] == pytest.approx(2.0, rel=1e-10)
    sq = acts["x^2"]
    assert sq["classification"]["growth"] == "A>1"
    assert sq["signature"]["alpha_plus"] == ["inf"] * 6 and sq["auxiliary"]["b"] == [None] * 6
    assert sq["report_card"]["bias_area"]["value"] is None  # undefined

    with open(out_dir / "signature.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert set(jaxsig.FIELDS) <= set(rows[0])
    assert len(rows) == 3 * 7  # 6 grid points and sigma = 1, per activation
    tanh_at_1 = next(r for r in rows if r["activation"] == "tanh" and float(r["sigma"]) == 1.0)
    assert float(tanh_at_1["g1"]) == pytest.approx(1 - float(tanh_at_1["m2"]), rel=1e-12)  # SPEC

    md = (out_dir / "report.md").read_text()
    for token in (
        "![components](components.png)",
        "![g2 against tv](g2_vs_tv.png)",
        "![shapes](shapes.png)",
        "| activation | m1 |",
        "### relu",
        "| x^2 | A>1 |",
        "sW^2 = 2 keeps q = 1 fixed",
    ):
        assert token in md, token


def test_report_quiet_no_figures_user_function(capsys, tmp_path, user_module):
    out_dir = tmp_path / "rep2"
    code, out, err = run(
        capsys,
        "report",
        "-a",
        f"{user_module}:scaled_tanh",
        "--param",
        "a=0.5",
        "--sigma-num",
        "7",
        "--out",
        str(out_dir),
        "--quiet",
        "--no-figures",
        "--tv-max",
        "0.5",
    )
    assert code == 0, err
    assert out == "" and err == ""
    assert sorted(p.name for p in out_dir.iterdir()) == ["report.md", "signature.csv", "signature.json"]
    entry = json.loads((out_dir / "signature.json").read_text())["activations"][0]
    assert entry["params"] == {"a": 0.5}
    # tv of a tanh(x) is 2a = 1: fails the strict tv < 0.5 chosen here.
    card = entry["report_card"]["conditioning"]
    assert card["value"] == pytest.approx(1.0, rel=1e-10) and card["threshold"] == 0.5
    assert card["passed"] is False and card["rule"] == "tv < 0.5"
    assert entry["classification"]["growth"] == "A0"


# --- As a real command --------------------------------------------------------------------------


def _subprocess(*argv):
    env = {**os.environ, "JAXSIG_CACHE_DIR": "none"}
    return subprocess.run([sys.executable, "-m", "jaxsig", *argv], capture_output=True, text=True, env=env, timeout=300)


def test_python_m_jaxsig_version():
    proc = _subprocess("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"jaxsig {jaxsig.__version__}"


def test_python_m_jaxsig_error_has_no_traceback():
    proc = _subprocess("table", "-a", "nosuch")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("jaxsig: error: unknown activation 'nosuch'")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_report_leaves_nothing_half_written(capsys, tmp_path, monkeypatch, existing):
    # Ctrl-C after the first activation's signature, before any file is complete.
    out_dir = tmp_path / "r"
    if existing:
        out_dir.mkdir()
        (out_dir / "report.md").write_text("previous run\n")
    from jaxsig.theory import taxonomy

    calls = {"n": 0}
    real = taxonomy.classify

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(taxonomy, "classify", interrupt)
    code, _, err = run(
        capsys, "report", "-a", "relu,tanh", "--out", str(out_dir), "--no-figures", "--quiet", "--sigma-num", "4"
    )
    assert code == 130 and "interrupted" in err
    if existing:
        assert [p.name for p in out_dir.iterdir()] == ["report.md"]
        assert (out_dir / "report.md").read_text() == "previous run\n"
    else:
        assert not out_dir.exists()
    assert [p.name for p in tmp_path.iterdir()] == (["r"] if existing else [])  # no staging folder left


def test_report_replaces_files_of_an_existing_folder(capsys, tmp_path):
    out_dir = tmp_path / "r"
    out_dir.mkdir()
    (out_dir / "notes.txt").write_text("mine\n")
    (out_dir / "report.md").write_text("old\n")
    code, _, err = run(
        capsys, "report", "-a", "relu", "--out", str(out_dir), "--no-figures", "--quiet", "--sigma-num", "4"
    )
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == ["notes.txt", "report.md", "signature.csv", "signature.json"]
    assert (out_dir / "notes.txt").read_text() == "mine\n"
    assert (out_dir / "report.md").read_text().startswith("# Integral signatures")
