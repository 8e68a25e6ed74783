"""The stability plane: a family at (dm2/dsigma, g2) at the variance-preserving point,
its boundaries V'(q) = 1 and chi1 = 1, the figure, and ``jaxsig phase --plane m2prime-g2``.

References: closed-form moments of phi(x) = x + c x^3 + s (Gaussian moments of
polynomials), the crossings of that family solved by hand, central differences of
jaxsig.dynamics.variance_map, and jaxsig.dynamics.fixed_point on both sides of
each boundary.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxsig
from jaxsig import dynamics as D
from jaxsig.app import cli
from jaxsig.app.plotting import dynamics as plotting
from jaxsig.theory import stability as S

SHIFT = 0.5


def _cubic(x, p):
    return x + p["c"] * x**3 + p["s"]


CUBIC = jaxsig.Activation("cubic", _cubic, {"c": 0.0, "s": SHIFT})


def cubic_moments(c, s, sigma):
    """E[phi^2], d/dsigma of it, E[phi'^2] for phi = x + c x^3 + s, X ~ N(0, sigma^2)."""
    m2 = sigma**2 + 6 * c * sigma**4 + 15 * c**2 * sigma**6 + s**2
    dm2 = 2 * sigma + 24 * c * sigma**3 + 90 * c**2 * sigma**5
    g2sq = 1 + 6 * c * sigma**2 + 27 * c**2 * sigma**4
    return m2, dm2, g2sq


# At q = 1, s = 1/2: V' = (2 + 24c + 90c^2) / (2.5 + 12c + 30c^2) = 1 at 60c^2 + 12c - 1/2 = 0;
# chi1 = (1 + 6c + 27c^2) / (1.25 + 6c + 15c^2) = 1 at 12c^2 = 1/4.
V_CROSSINGS = ((-12 - math.sqrt(264)) / 120, (-12 + math.sqrt(264)) / 120)
CHI_CROSSINGS = (-math.sqrt(1 / 48), math.sqrt(1 / 48))


def test_coordinates_closed_forms_and_moments():
    q = 1.7
    sigma = math.sqrt(q)
    c = np.array([-0.3, -0.1, 0.0, 0.05, 0.2])
    p = S.stability_plane(CUBIC, "c", c, q=q)
    m2, dm2, g2sq = cubic_moments(c, SHIFT, sigma)
    np.testing.assert_allclose(p.m2, m2, rtol=1e-13)
    np.testing.assert_allclose(p.dm2_dsigma, dm2, rtol=1e-12)
    np.testing.assert_allclose(p.g2, np.sqrt(g2sq), rtol=1e-13)
    np.testing.assert_allclose(p.sigma_w2, q / m2, rtol=1e-13)
    np.testing.assert_allclose(p.variance_slope, sigma * dm2 / (2 * m2), rtol=1e-12)
    np.testing.assert_allclose(p.chi1, q * g2sq / m2, rtol=1e-13)
    np.testing.assert_allclose(p.dm2_dsigma_critical, 2 * sigma * m2 / q, rtol=1e-13)
    np.testing.assert_allclose(p.g2_critical, np.sqrt(m2 / q), rtol=1e-13)
    # The same sums as jaxsig.moments, member by member (a registered family, off-default params).
    fam = jaxsig.families.get("swish_beta")
    beta = np.array([0.3, 1.0, 4.0])
    params = {**fam.params, "shift": 0.3}
    p = S.stability_plane(fam, "beta", beta, q=q, params=params)
    for i, b in enumerate(beta):
        m = jaxsig.moments(fam, sigma, params={**params, "beta": b})
        np.testing.assert_allclose([p.m2[i], p.dm2_dsigma[i], p.g2[i]], [m.m2, m.dm2_dsigma, m.g2], rtol=1e-14)


def test_boundaries_against_the_crossings_and_fixed_point_on_both_sides():
    # On a boundary the member sits on its own boundary point.
    p = S.stability_plane(CUBIC, "c", np.array(V_CROSSINGS + CHI_CROSSINGS))
    np.testing.assert_allclose(p.variance_slope[:2], 1.0, rtol=1e-12)
    np.testing.assert_allclose(p.dm2_dsigma[:2], p.dm2_dsigma_critical[:2], rtol=1e-12)
    np.testing.assert_allclose(p.chi1[2:], 1.0, rtol=1e-12)
    np.testing.assert_allclose(p.g2[2:], p.g2_critical[2:], rtol=1e-12)
    assert list(p.variance_phase[:2]) == [1, 1] and list(p.phase[2:]) == [1, 1]
    # Either side of each crossing: the side of the boundary is the side of 1 for the
    # fixed point's own V'(q*) and chi1, with q* = q (the weight variance preserves q).
    q = 1.0
    for crossing, field in [(c, "slope") for c in V_CROSSINGS] + [(c, "chi1") for c in CHI_CROSSINGS]:
        c = np.array([crossing - 0.02, crossing + 0.02])
        p = S.stability_plane(CUBIC, "c", c, q=q)
        sides = []
        for i in range(2):
            params = {"c": c[i], "s": SHIFT}
            fp = D.fixed_point(CUBIC, p.sigma_w2[i], 0.0, q0=q, params=params)
            np.testing.assert_allclose(fp.q_star, q, rtol=1e-12)
            np.testing.assert_allclose(fp.slope, p.variance_slope[i], rtol=1e-10)
            np.testing.assert_allclose(fp.chi1, p.chi1[i], rtol=1e-12)
            # V' by central differences of the variance map itself.
            h = 1e-5
            v = D.variance_map(CUBIC, jnp.array([q - h, q + h]), p.sigma_w2[i], 0.0, params=params)
            np.testing.assert_allclose((v[1] - v[0]) / (2 * h), p.variance_slope[i], rtol=1e-8)
            if field == "slope":
                left = p.dm2_dsigma[i] < p.dm2_dsigma_critical[i]
                assert left == (float(fp.slope) < 1) == (int(p.variance_phase[i]) == 0)
                sides.append(left)
            else:
                below = p.g2[i] < p.g2_critical[i]
                assert below == (float(fp.chi1) < 1) == (int(p.phase[i]) == 0)
                sides.append(below)
        assert sides[0] != sides[1], (field, crossing)  # the boundary separates them


def test_poincare_lower_bound_on_chi1():
    # chi1 >= 1 - m1^2 / m2 (Var phi <= sigma^2 g2^2): odd members are never ordered here.
    odd = jaxsig.Activation("tanh_beta", lambda x, p: jnp.tanh(p["b"] * x), {"b": 1.0})
    p = S.stability_plane(odd, "b", np.linspace(0.1, 5.0, 7), q=0.8)
    assert np.all(np.asarray(p.chi1) >= 1 - 1e-12)
    fam = jaxsig.families.get("swish_beta")
    shift = np.linspace(-1.0, 1.0, 9)
    p = S.stability_plane(fam, "shift", shift)
    m1 = np.array([float(jaxsig.moments(fam, 1.0, params={**fam.params, "shift": s}).m1) for s in shift])
    assert np.all(np.asarray(p.chi1) >= 1 - m1**2 / np.asarray(p.m2) - 1e-12)
    assert np.any(np.asarray(p.phase) == 0) and np.any(np.asarray(p.phase) == 2)  # it does cross


def test_gradients_jit_vmap_and_shapes():
    def chi1(c, q):
        return S.stability_plane(CUBIC, "c", c, q=q).chi1

    g = jax.grad(chi1, argnums=(0, 1))(0.1, 1.3)
    for i, (u, v) in enumerate([((0.1 + 1e-6, 1.3), (0.1 - 1e-6, 1.3)), ((0.1, 1.3 + 1e-6), (0.1, 1.3 - 1e-6))]):
        fd = (float(chi1(*u)) - float(chi1(*v))) / 2e-6
        np.testing.assert_allclose(g[i], fd, rtol=1e-6)
    values = jnp.array([[-0.1, 0.0, 0.1], [0.2, 0.3, 0.4]])
    p = jax.jit(lambda v: S.stability_plane(CUBIC, "c", v))(values)
    assert p.chi1.shape == (2, 3) and p.phase.shape == (2, 3) and p.sigma.shape == ()
    q = jnp.array([0.5, 1.0, 2.0])
    batched = jax.vmap(lambda qq: S.stability_plane(CUBIC, "c", 0.1, q=qq).variance_slope)(q)
    looped = [float(S.stability_plane(CUBIC, "c", 0.1, q=qq).variance_slope) for qq in q]
    np.testing.assert_allclose(batched, looped, rtol=1e-14)


def test_errors_are_clear():
    with pytest.raises(ValueError, match="param must name a scalar parameter of 'cubic'.*valid names: c, s"):
        S.stability_plane(CUBIC, "beta", [1.0])
    with pytest.raises(ValueError, match="has no scalar parameters"):
        S.stability_plane("tanh", "beta", [1.0])
    with pytest.raises(ValueError, match="q must be positive"):
        S.stability_plane(CUBIC, "c", [0.1], q=0.0)
    with pytest.raises(ValueError, match="q must be at most"):
        S.stability_plane(CUBIC, "c", [0.1], q=1e4)
    with pytest.raises(ValueError, match="values must be finite"):
        S.stability_plane(CUBIC, "c", [0.1, np.nan])


def test_figure(tmp_path):
    path = tmp_path / "plane.png"
    fig = plotting.plot_stability_plane(CUBIC, "c", np.linspace(-0.3, 0.3, 13), path=str(path))
    assert len(fig.axes) == 3  # two planes and the colour bar
    left, right = fig.axes[:2]
    assert "V'(q) = 1" in [t.get_text() for t in left.get_legend().get_texts()][1]
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib import image

    pixels = image.imread(path)
    assert pixels.shape[:2] == (528, 1210)  # 11 x 4.8 inches at 110 dpi
    assert pixels[..., :3].std() > 0.05
    with pytest.raises(ValueError, match="values must be given"):
        plotting.plot_stability_plane(CUBIC, "c")


def test_phase_command_plane(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXSIG_CACHE_DIR", "none")  # no disk cache from an in-process run
    out = tmp_path / "plane-{name}.png"
    argv = ["phase", "--plane", "m2prime-g2", "--family", "swish_beta", "--param", "shift=-1:1"]
    argv += ["--param", "beta=2", "--points", "5", "--q", "1.5", "--out", str(out), "--format", "json"]
    code = cli.main(argv)
    stdout, stderr = capsys.readouterr()
    assert code == 0, stderr
    rows = json.loads(stdout)
    fam = jaxsig.families.get("swish_beta")  # --family prefers families, as jaxsig design does
    want = S.stability_plane(fam, "shift", np.linspace(-1, 1, 5), q=1.5, params={**fam.params, "beta": 2.0})
    np.testing.assert_allclose([r["shift"] for r in rows], np.linspace(-1, 1, 5), rtol=1e-15)
    for key in ("dm2_dsigma", "g2", "sigma_w2", "variance_slope", "chi1", "dm2_dsigma_critical", "g2_critical"):
        np.testing.assert_allclose([r[key] for r in rows], getattr(want, key), rtol=1e-14, err_msg=key)
    assert [r["phase"] for r in rows] == [S.CHI_PHASES[int(i)] for i in want.phase]
    assert [r["variance_phase"] for r in rows] == [S.VARIANCE_PHASES[int(i)] for i in want.variance_phase]
    png = tmp_path / "plane-swish_beta.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # Text and Markdown tables.
    assert cli.main(argv[:-2] + ["--no-figure"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("swish_beta at sigma = sqrt(q) = 1.22474")
    assert "attracting" in text and "chaotic" in text
    assert cli.main(argv[:-2] + ["--no-figure", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("| shift | dm2/dsigma | g2 |")
    # Usage errors: one line, exit status 2.
    base = ["phase", "--plane", "m2prime-g2", "--no-figure"]
    for extra, message in [
        ([], "needs --family"),
        (["--family", "tanh", "--param", "x=0:1"], "has no scalar parameters"),
        (["--family", "swish_beta", "--param", "beta=2:1"], "LO < HI"),
        (["--family", "swish_beta", "--param", "beta=2"], "exactly one --param NAME=LO:HI"),
        (["--family", "swish_beta", "--param", "gamma=0:1"], "NAME one of beta, scale, shift"),
        (["--family", "swishh", "--param", "beta=0:1"], "swishh"),
        (["--family", "swish_beta", "-a", "relu", "--param", "beta=0:1"], "not -a/--activations"),
    ]:
        assert cli.main(base + extra) == 2, extra
        assert message in capsys.readouterr().err, extra
    assert cli.main(["phase", "--family", "swish_beta", "--no-figure"]) == 2
    assert "--family is for --plane m2prime-g2" in capsys.readouterr().err
