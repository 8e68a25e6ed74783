"""Regenerate ``tests/data/hermite_reference.json`` (mpmath only; no jaxsig import).

    python tests/make_hermite_reference.py

Each row holds the probabilists' Hermite coefficients
``h_k = E[phi(mu + sigma Z) He_k(Z)] / k!``, ``k < K``, of one activation at one
``(sigma, mu)``, computed with adaptive mpmath quadrature at ``DPS`` digits.
``tests/test_hermite.py`` reads the table and recomputes a few entries live, so
the file cannot drift from this source.
"""

import json
import pathlib
from concurrent.futures import ProcessPoolExecutor

import mpmath as mp

DPS = 30
K = 24
SIGMAS = (0.5, 1.0, 2.0)
MUS = (0.0, 0.7)
OUT = pathlib.Path(__file__).parent / "data" / "hermite_reference.json"

# The activations, written independently of jaxsig: (phi, kinks).
ACTIVATIONS = {
    "tanh": (mp.tanh, ()),
    "gelu": (lambda x: x * mp.ncdf(x), ()),
    "relu": (lambda x: x if x > 0 else mp.mpf(0), (0,)),
    "softplus": (lambda x: mp.log1p(mp.exp(x)) if x < 0 else x + mp.log1p(mp.exp(-x)), ()),
}


def hermite_e(k, z):
    """``He_k(z)`` by ``He_{j+1} = z He_j - j He_{j-1}`` (exact integers times powers of z)."""
    p0, p1 = mp.mpf(1), z
    if k == 0:
        return p0
    for j in range(1, k):
        p0, p1 = p1, z * p1 - j * p0
    return p1


def breaks(sigma, mu, kinks):
    """Split points in ``z``: the integrand's scales, and each kink ``(b - mu) / sigma``.

    ``He_k(z)^2 e^{-z^2/2}`` is below ``1e-150`` beyond ``|z| = 40`` for ``k < 24``.
    """
    pts = {mp.mpf(v) for v in (-40, -20, -12, -8, -5, -3, -1.5, 0, 1.5, 3, 5, 8, 12, 20, 40)}
    pts |= {(mp.mpf(b) - mu) / sigma for b in kinks}
    return sorted(pts)


def coefficients(name, sigma, mu, n=K):
    """``[h_0, ..., h_{n-1}]`` and ``m2 = E[phi(X)^2]`` at ``DPS`` digits (as strings)."""
    f, kinks = ACTIVATIONS[name]
    with mp.workdps(DPS):
        s, m = mp.mpf(sigma), mp.mpf(mu)
        pts = breaks(s, m, kinks)
        h = []
        for k in range(n):
            v = mp.quad(lambda z, k=k: f(m + s * z) * hermite_e(k, z) * mp.npdf(z), pts)
            h.append(v / mp.factorial(k))
        m2 = mp.quad(lambda z: f(m + s * z) ** 2 * mp.npdf(z), pts)
        return [mp.nstr(v, DPS) for v in h], mp.nstr(m2, DPS)


def _row(args):
    name, s, m = args
    h, m2 = coefficients(name, s, m)
    return dict(activation=name, sigma=s, mu=m, h=h, m2=m2)


def main():
    jobs = [(n, s, m) for n in ACTIVATIONS for s in SIGMAS for m in MUS]
    with ProcessPoolExecutor(max_workers=2) as ex:
        rows = list(ex.map(_row, jobs))
    OUT.write_text(json.dumps({"dps": DPS, "k": K, "rows": rows}, indent=1))
    print(f"wrote {OUT} ({len(rows)} rows of {K} coefficients)")


if __name__ == "__main__":
    main()
