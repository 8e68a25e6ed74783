"""Independent high-precision references (mpmath), written from the definitions.

Nothing here imports jaxsig: each activation is re-implemented in mpmath with its
derivative in closed form, and every reference is an adaptive mpmath integral
at ``DPS`` digits, split at kinks and around the Gaussian's centre.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import mpmath as mp

DPS = 25

# Tolerances of the accuracy contract (issue 2), float64.
GAUSS_TOL = 1e-10  # absolute, or relative where |value| > 1
LINE_TOL = 1e-8  # tv and c
F32_RTOL = 1e-5
F32_C_RTOL = 5e-5  # c in float32: tail cancellation (measured 3e-5 for Swish)


class Reference(NamedTuple):
    """An activation in mpmath: value, first and second derivative, kinks, slopes."""

    f: Callable
    df: Callable
    d2f: Callable
    kinks: tuple
    alpha: tuple  # (alpha_plus, alpha_minus)
    beta: tuple  # (beta_plus, beta_minus)


def _sig(x):
    return 1 / (1 + mp.exp(-x))


def _Phi(x):
    return mp.ncdf(x)


def _phi(x):
    return mp.npdf(x)


def _sech2(x):
    return 1 / mp.cosh(x) ** 2


def _softplus(x):
    return mp.log1p(mp.exp(x))


def _tanh_exp(x):
    # tanh(e^x) = 1 - O(exp(-2 e^x)): exactly 1 at 25 digits for x > 5, and
    # mpmath's tanh of a huge argument exhausts memory.
    return mp.mpf(1) if x > 50 else mp.tanh(mp.exp(x))


A_LEAKY = mp.mpf("0.01")

PAPER_REFS = {
    "relu": Reference(lambda x: max(x, 0), lambda x: mp.mpf(x > 0), lambda x: mp.mpf(0), (0,), (1, 0), (0, 0)),
    "leaky_relu": Reference(
        lambda x: x if x > 0 else A_LEAKY * x,
        lambda x: mp.mpf(1) if x > 0 else A_LEAKY,
        lambda x: mp.mpf(0),
        (0,),
        (1, A_LEAKY),
        (0, 0),
    ),
    "tanh": Reference(mp.tanh, _sech2, lambda x: -2 * mp.tanh(x) * _sech2(x), (), (0, 0), (1, -1)),
    "sigmoid": Reference(
        _sig,
        lambda x: _sig(x) * (1 - _sig(x)),
        lambda x: _sig(x) * (1 - _sig(x)) * (1 - 2 * _sig(x)),
        (),
        (0, 0),
        (1, 0),
    ),
    "swish": Reference(
        lambda x: x * _sig(x),
        lambda x: _sig(x) + x * _sig(x) * (1 - _sig(x)),
        lambda x: _sig(x) * (1 - _sig(x)) * (2 + x * (1 - 2 * _sig(x))),
        (),
        (1, 0),
        (0, 0),
    ),
    "gelu": Reference(
        lambda x: x * _Phi(x),
        lambda x: _Phi(x) + x * _phi(x),
        lambda x: (2 - x * x) * _phi(x),
        (),
        (1, 0),
        (0, 0),
    ),
    "mish": Reference(
        lambda x: x * mp.tanh(_softplus(x)),
        lambda x: mp.tanh(_softplus(x)) + x * _sech2(_softplus(x)) * _sig(x),
        lambda x: mp.diff(lambda t: mp.tanh(_softplus(t)) + t * _sech2(_softplus(t)) * _sig(t), x),
        (),
        (1, 0),
        (0, 0),
    ),
    "telu": Reference(
        lambda x: x * _tanh_exp(x),
        lambda x: _tanh_exp(x) + (0 if x > 50 else x * _sech2(mp.exp(x)) * mp.exp(x)),
        lambda x: mp.diff(lambda t: _tanh_exp(t) + t * _sech2(mp.exp(t)) * mp.exp(t), x),
        (),
        (1, 0),
        (0, 0),
    ),
}


def _breaks(sigma, mu, kinks):
    # Beyond 40 sigma the density is below exp(-800): the integral is complete.
    pts = {mu - 40 * sigma, mu - 3 * sigma, mu, mu + 3 * sigma, mu + 40 * sigma}
    pts |= {mp.mpf(k) for k in kinks if mu - 40 * sigma < k < mu + 40 * sigma}
    return sorted(pts)


@functools.lru_cache(maxsize=None)
def gaussian_reference(name: str, sigma: float, mu: float) -> dict:
    """m1, g1, g2, m2, eta, g4 of ``PAPER_REFS[name]`` at ``(sigma, mu)`` by mpmath."""
    ref = PAPER_REFS[name]
    with mp.workdps(DPS):
        s, m = mp.mpf(sigma), mp.mpf(mu)

        def E(g):
            def dens(x):
                return mp.exp(-((x - m) ** 2) / (2 * s * s)) / (s * mp.sqrt(2 * mp.pi))

            return mp.quad(lambda x: g(x) * dens(x), _breaks(s, m, ref.kinks))

        m1 = E(ref.f)
        g1 = E(ref.df)
        d2 = E(lambda x: ref.df(x) ** 2)
        m2 = E(lambda x: ref.f(x) ** 2)
        d4 = E(lambda x: ref.df(x) ** 4)
        eta = m2 - m1**2 - s**2 * g1**2
        return dict(
            m1=float(m1),
            g1=float(g1),
            g2=float(mp.sqrt(d2)),
            m2=float(m2),
            eta=float(eta),
            g4=float(d4 ** mp.mpf(0.25)),
        )


@functools.lru_cache(maxsize=None)
def line_reference(name: str) -> dict:
    """tv = TV(phi') and c by mpmath for ``PAPER_REFS[name]``.

    ``tv`` sums ``|phi'(e_{i+1}) - phi'(e_i)|`` between the extrema ``e_i`` of
    ``phi'`` (roots of ``phi''`` found by a sign scan on [-30, 30] and refined
    with ``findroot``), the kinks (both one-sided values) and the limits at
    +-inf (the slopes). ``c`` integrates ``|phi - alpha x - beta|`` on each
    half-line.
    """
    ref = PAPER_REFS[name]
    with mp.workdps(DPS):
        roots = []
        grid = [mp.mpf(i) / 40 for i in range(-800, 801)]
        vals = [ref.d2f(x) for x in grid]
        for a, b, fa, fb in zip(grid, grid[1:], vals, vals[1:]):
            if fa == 0 and a not in ref.kinks:
                roots.append(a)
            elif fa * fb < 0:
                roots.append(mp.findroot(ref.d2f, (a, b), solver="anderson"))
        eps = mp.mpf(10) ** (-DPS + 5)
        pts = sorted(set(roots) | {mp.mpf(k) for k in ref.kinks})
        seq = [mp.mpf(ref.alpha[1])]  # phi'(-inf)
        for p in pts:
            if p in ref.kinks:
                seq += [ref.df(p - eps), ref.df(p + eps)]
            else:
                seq.append(ref.df(p))
        seq.append(mp.mpf(ref.alpha[0]))  # phi'(+inf)
        tv = sum(abs(b - a) for a, b in zip(seq, seq[1:]))
        (ap, am), (bp, bm) = ref.alpha, ref.beta
        # Beyond |x| = 80 every integrand here is below 1e-30.
        cp = mp.quad(lambda x: abs(ref.f(x) - ap * x - bp), [0, 1, 10, 40, 80])
        cm = mp.quad(lambda x: abs(ref.f(x) - am * x - bm), [-80, -40, -10, -1, 0])
        return dict(tv=float(tv), c=float(cp + cm))


def close(value, expected, tol):
    """``|value - expected| <= tol * max(1, |expected|)`` (inf matches inf)."""
    value, expected = float(value), float(expected)
    if mp.isinf(expected) or mp.isinf(value):
        return value == expected
    return abs(value - expected) <= tol * max(1.0, abs(expected))
