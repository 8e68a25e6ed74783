"""The rules' static tables, in float64 NumPy: Gauss nodes and weights, the
composite rule's panel edges and its kink-free Gaussian grid.

Each is a pure function of a rule's (hashable, frozen) configuration, computed
once and cached; :mod:`jaxsig.core.quadrature` casts them to the working dtype
and cuts them at kinks.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from jaxsig.core.quadrature import Composite

__all__ = [
    "composite_edges",
    "composite_nodes",
    "gaussian_base",
    "gaussian_edges",
    "gaussian_panel_of",
    "hermite_nodes",
    "legendre01",
    "legendre_nodes",
    "legendre_tables",
]


@functools.lru_cache(maxsize=None)
def hermite_nodes(order: int):
    t, w = np.polynomial.hermite_e.hermegauss(order)
    return t, w / w.sum()


@functools.lru_cache(maxsize=None)
def legendre_nodes(order: int):
    return np.polynomial.legendre.leggauss(order)


@functools.lru_cache(maxsize=None)
def legendre01(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes and weights of ``order`` on ``[0, 1]`` (float64)."""
    t, w = legendre_nodes(order)
    return 0.5 * (t + 1.0), 0.5 * w


@functools.lru_cache(maxsize=None)
def legendre_tables(order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes ``t`` on ``[-1, 1]`` and the inverse Vandermonde
    ``V^-1`` (values at ``t`` -> Legendre coefficients) of ``order`` (float64)."""
    t, _ = legendre_nodes(order)
    return t, np.linalg.inv(np.polynomial.legendre.legvander(t, order - 1))


def _outer_edges(cfg: Composite, h0: float, panel_sigmas: float):
    """Positive panel edges beyond the inner refinement: uniform, width ``h0``, to
    ``mu_max + 8 sigma_min``; then graded, width ``panel_sigmas (x - mu_max) / 8``
    (at least ``h0``), up to ``x_max``."""
    u = cfg.mu_max + 8.0 * cfg.sigma_min
    uniform = h0 * np.arange(1, math.ceil(u / h0) + 1)
    graded, x = [], uniform[-1]
    while x < cfg.x_max:
        x = x + max(h0, panel_sigmas * (x - cfg.mu_max) / 8.0)
        graded.append(min(x, cfg.x_max))
    return uniform, graded


@functools.lru_cache(maxsize=None)
def composite_edges(cfg: Composite) -> np.ndarray:
    h0 = cfg.panel_sigmas * cfg.sigma_min
    inner = h0 * 2.0 ** -np.arange(cfg.inner_levels, 0, -1)
    uniform, graded = _outer_edges(cfg, h0, cfg.panel_sigmas)
    dyadic = 2.0 ** np.arange(0, int(math.log2(cfg.x_max)) + 1)
    half = np.concatenate([inner, uniform, graded, dyadic])
    half = half[half <= cfg.x_max]
    # Drop edges that would leave a sliver next to a power of two: slivers cost
    # nodes and buy nothing.
    keep = np.ones_like(half, dtype=bool)
    for d in dyadic:
        keep &= ~((np.abs(half - d) < 0.25 * h0 * max(d, 1.0)) & (half != d))
    half = half[keep]
    edges = np.concatenate([-half, [0.0], half])
    kinks = np.asarray([k for k in cfg.kinks if abs(k) < cfg.x_max], dtype=float)
    if kinks.size:
        # Remove edges too close to a kink, then put the kink itself in.
        near = np.min(np.abs(edges[:, None] - kinks[None, :]), axis=1) < 1e-3 * h0
        edges = np.concatenate([edges[~near], kinks])
    return np.unique(edges)


@functools.lru_cache(maxsize=None)
def gaussian_edges(cfg: Composite) -> np.ndarray:
    """Edges of the kink-free Gaussian grid (symmetric about 0, which is an edge)."""
    h0 = cfg.gaussian_panel_sigmas * cfg.sigma_min
    levels = max(1, math.ceil(math.log(h0 / cfg.h_inner) / math.log(3.0) - 1e-9))
    inner = h0 * 3.0 ** -np.arange(levels, 0, -1)
    uniform, graded = _outer_edges(cfg, h0, cfg.gaussian_panel_sigmas)
    half = np.concatenate([inner, uniform, graded])
    half = np.unique(half[half <= cfg.x_max])
    return np.concatenate([-half[::-1], [0.0], half])


@functools.lru_cache(maxsize=None)
def gaussian_base(cfg: Composite):
    """Nodes and line weights of the kink-free Gaussian grid in mirrored layout:
    the negative half ascending, then the positive half descending (exact mirror
    images, so that odd integrands at ``mu = 0`` cancel to the last bit)."""
    edges = gaussian_edges(cfg)
    neg = edges[: edges.size // 2 + 1]  # -x_max .. 0
    t, w = legendre01(cfg.gaussian_order)
    a, b = neg[:-1, None], neg[1:, None]
    x, wx = (a + (b - a) * t).ravel(), ((b - a) * w).ravel()
    return np.concatenate([x, -x]), np.concatenate([wx, wx])


@functools.lru_cache(maxsize=None)
def gaussian_panel_of(cfg: Composite) -> np.ndarray:
    """For each node of :func:`gaussian_base`, the index of its panel in :func:`gaussian_edges`."""
    edges = gaussian_edges(cfg)
    x, _ = gaussian_base(cfg)
    return (np.searchsorted(edges, x) - 1).astype(np.int32)


@functools.lru_cache(maxsize=None)
def composite_nodes(cfg: Composite):
    edges = composite_edges(cfg)
    t, w = legendre_nodes(cfg.order)
    a, b = edges[:-1, None], edges[1:, None]
    x = 0.5 * (a + b) + 0.5 * (b - a) * t
    return x.ravel(), (0.5 * (b - a) * w).ravel()
