"""jaxsig.design with parameter constraints, any optax optimizer, and mean-field targets.

* SELU is the scaled ELU with ``m1(1) = 0`` and ``m2(1) = 1`` (Klambauer et al. 2017): with
  ``shift`` fixed at 0 the search must return its constants.
* Fixed parameters keep their value bit for bit; bounded ones stay in ``[lo, hi]``, and an
  active bound is met exactly.
* ``optax.adam`` and ``optax.lbfgs`` (whose update needs ``value``, ``grad`` and ``value_fn``)
  both reach the same point; so does a chain with ``optax.contrib.reduce_on_plateau``.
* A design for ``m1 == 0`` and ``chi1 == 1`` at ``sigma_b2 = 0.1`` is checked by SciPy quadrature:
  ``chi1 = (q - sb2) g2^2 / m2`` to 1e-8.
"""

import json
import math

import numpy as np
import optax
import pytest
from scipy import integrate

import jaxsig
from jaxsig import designer, families
from jaxsig.activations import SELU_ALPHA, SELU_SCALE

SELU = ["m1 == 0", "m2 == 1"]
SMALL = dict(steps=160, rounds=8, restarts=3, progress=False)


def scipy_gauss(f, sigma=1.0):
    """``E[f(sigma Z)]`` by adaptive quadrature, split at 0."""

    def dens(x):
        return math.exp(-0.5 * (x / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

    pts = [-14 * sigma, 0.0, 14 * sigma]
    return sum(
        integrate.quad(lambda x: f(x) * dens(x), a, b, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
        for a, b in zip(pts, pts[1:])
    )


@pytest.fixture(scope="module")
def selu_adam():
    return jaxsig.design("scaled_elu", SELU, fixed={"shift": 0.0}, **SMALL)


def test_selu_constants_recovered(selu_adam):
    res = selu_adam
    assert res.feasible
    assert abs(float(res.params["lam"]) - SELU_SCALE) <= 1e-8
    assert abs(float(res.params["alpha"]) - SELU_ALPHA) <= 1e-8
    assert float(res.params["shift"]) == 0.0 and res.fixed == {"shift": 0.0}


def test_lbfgs_reaches_the_same_point(selu_adam):
    res = jaxsig.design(
        "scaled_elu",
        SELU,
        fixed={"shift": 0.0},
        optimizer=optax.lbfgs(),
        steps=32,
        rounds=4,
        restarts=2,
        progress=False,
    )
    assert res.feasible
    for k in ("lam", "alpha"):
        assert abs(float(res.params[k]) - float(selu_adam.params[k])) <= 1e-8
    assert float(res.params["shift"]) == 0.0


def test_reduce_on_plateau_gets_the_value():
    opt = optax.chain(optax.adam(0.02), optax.contrib.reduce_on_plateau(patience=5, factor=0.5))
    res = jaxsig.design("scaled_elu", SELU, fixed={"shift": 0.0}, optimizer=opt, **SMALL)
    assert res.feasible
    assert abs(float(res.params["alpha"]) - SELU_ALPHA) <= 1e-8


def test_fixed_and_bounded_parameters_are_respected_exactly():
    fam = families.get("swish_beta")
    # chi1 rises with beta at m1 = 0 (0.9 for the linear beta = 0, 1.32 for ReLU);
    # chi1 = 1 needs beta = 0.571..., so the bound beta >= 0.8 is active and infeasible.
    args = dict(q=1.0, sigma_b2=0.1, fixed={"scale": 1.25}, **SMALL)
    free = jaxsig.design(fam, ["m1 == 0", "chi1 == 1"], bounds={"beta": (0.2, 3.0)}, **args)
    assert free.feasible and 0.2 <= float(free.params["beta"]) <= 3.0
    assert float(free.params["scale"]) == 1.25
    boxed = jaxsig.design(fam, ["m1 == 0", "chi1 == 1"], bounds={"beta": (0.8, 3.0)}, **args)
    assert not boxed.feasible
    assert float(boxed.params["beta"]) == 0.8 and float(boxed.params["scale"]) == 1.25
    assert boxed.bounds == {"beta": (0.8, 3.0)}


def test_array_entries_and_one_sided_bounds():
    fam = families.get("rational")
    res = jaxsig.design(
        fam,
        ["m2 == 0.5", "g2 <= 0.9"],
        fixed={"numerator[0]": 0.0, "denominator": [0.0, 1.0, 0.1]},
        bounds={"slope": (-math.inf, 0.45)},
        **SMALL,
    )
    assert res.feasible
    assert float(res.params["numerator"][0]) == 0.0
    np.testing.assert_array_equal(res.params["denominator"], [0.0, 1.0, 0.1])
    assert float(res.params["slope"]) <= 0.45


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(fixed={"gain": 1.0}), ValueError, "unknown parameter 'gain'; the parameters are beta, scale, shift"),
        (dict(bounds={"beta": (1.0, 1.0)}), ValueError, r"needs lo < hi, got \(1, 1\); to hold it at 1, use fixed"),
        (dict(bounds={"beta": 1.0}), TypeError, r"takes a pair \(lo, hi\)"),
        (dict(fixed={"beta": 1.0}, bounds={"beta": (0.0, 2.0)}), ValueError, "is also fixed"),
        (dict(fixed={"beta": 1.0, "scale": 1.0, "shift": 0.0}), ValueError, "every parameter is fixed"),
        (dict(fixed={"beta": math.nan}), ValueError, "must be finite"),
        (dict(q=0.1, sigma_b2=0.2), ValueError, "q must exceed sigma_b2"),
    ],
)
def test_bad_constraints_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxsig.design(families.get("swish_beta"), "m2 == 1", progress=False, **kwargs)


def test_entry_out_of_range_is_named():
    with pytest.raises(ValueError, match="'numerator\\[3\\]' is out of range: 'numerator' has 3 entries"):
        jaxsig.design("rational", "m2 == 1", fixed={"numerator[3]": 0.0}, progress=False)


@pytest.fixture(scope="module")
def critical():
    fam = families.get("swish_beta")
    return jaxsig.design(fam, ["m1 == 0", "chi1 == 1"], q=1.0, sigma_b2=0.1, **SMALL)


def test_mean_field_design_checked_by_scipy(critical):
    res = critical
    assert res.feasible and res.q == 1.0 and res.sigma_b2 == 0.1
    act = res.activation
    import jax

    f = jax.jit(lambda x: act(x))
    df = jax.jit(jax.grad(lambda x: act(x)))
    m1 = scipy_gauss(lambda x: float(f(x)))
    m2 = scipy_gauss(lambda x: float(f(x)) ** 2)
    g2sq = scipy_gauss(lambda x: float(df(x)) ** 2)
    assert abs(m1) <= 1e-8
    assert abs((1.0 - 0.1) * g2sq / m2 - 1.0) <= 1e-8
    np.testing.assert_allclose(res.values[1], (1.0 - 0.1) * g2sq / m2, rtol=1e-11)


def test_json_round_trip_keeps_the_operating_point_and_constraints(critical, selu_adam, tmp_path):
    for res in (critical, selu_adam):
        path = res.save(tmp_path / "r.json")
        doc = json.loads(path.read_text())
        assert doc["q"] == res.q and doc["sigma_b2"] == res.sigma_b2 and doc["fixed"] == res.fixed
        back = designer.DesignResult.load(path)
        assert (back.q, back.sigma_b2, back.fixed, back.bounds, back.notes) == (
            res.q,
            res.sigma_b2,
            res.fixed,
            res.bounds,
            res.notes,
        )
        assert back.targets.texts == res.targets.texts
    boxed = designer.DesignResult.from_dict({**critical.to_dict(), "bounds": {"beta": ["-inf", 3.0]}})
    assert boxed.bounds == {"beta": (-math.inf, 3.0)}


def test_poincare_warning_and_note_in_the_infeasibility_report():
    fam = families.get("swish_beta")
    with pytest.warns(UserWarning, match="Gaussian Poincaré inequality"):
        res = jaxsig.design(fam, ["m1 == 0", "chi1 <= 0.95"], steps=40, rounds=2, restarts=1, progress=False)
    assert not res.feasible
    assert len(res.notes) == 1 and "'chi1 <= 0.95' cannot hold" in res.notes[0]
    assert "note: at sigma_b2 = 0" in res.summary()
    # the point found obeys the bound it cannot beat: chi1 >= Var / m2 = 1 - m1^2 / m2 at sigma_b2 = 0
    m1, m2 = res.signature.m1, res.signature.m2
    assert res.values[1] >= 1.0 - m1**2 / m2 - 1e-12


# --- Command line ------------------------------------------------------------------------------------


def test_cli_fixed_bound_and_operating_point(tmp_path, capsys):
    from jaxsig import cli

    out = tmp_path / "selu.json"
    argv = ["design", "--family", "scaled_elu", "--target", "m1==0", "--target", "m2==1", "--fixed", "shift=0"]
    argv += ["--bound", "alpha=0,3", "--bound", "lam=-inf,inf", "--q", "1.5", "--sigma-b2", "0.2"]
    argv += ["--steps", "160", "--rounds", "8", "--restarts", "3", "--out", str(out), "--cache-dir", "none"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "fixed: {'shift': 0.0}" in printed and "bounds: {'alpha': (0.0, 3.0), 'lam': (-inf, inf)}" in printed
    res = designer.DesignResult.load(out)
    assert (res.q, res.sigma_b2) == (1.5, 0.2) and float(res.params["shift"]) == 0.0
    assert abs(float(res.params["alpha"]) - SELU_ALPHA) <= 1e-8


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--fixed", "gain=1"], "--fixed/--bound: fixed: unknown parameter 'gain'; the parameters are"),
        (["--fixed", "shift"], "--fixed expects NAME=VALUE, got 'shift'"),
        (["--bound", "beta=1"], "--bound expects NAME=LO,HI, got 'beta=1'"),
        (["--bound", "beta=0,x"], "--bound 'beta=0,x': expected a number, got 'x'"),
        (["--q", "0.1", "--sigma-b2", "0.2"], "--sigma-b2 (0.2) must be below --q (0.1)"),
    ],
)
def test_cli_constraint_errors_are_one_line(extra, message, capsys):
    from jaxsig import cli

    argv = ["design", "--family", "swish_beta", "--target", "m1==0", "--cache-dir", "none", *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxsig: error: ") and message in err and err.count("\n") == 1
