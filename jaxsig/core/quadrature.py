"""Quadrature rules: nodes and weights for Gaussian expectations and line integrals.

Two rules compute Gaussian expectations ``E[f(X)]``, ``X = mu + sigma Z``:

* :class:`Composite` (the default): Gauss–Legendre panels on a fixed grid in
  ``x`` with the Gaussian density folded into the weights,

  .. math:: E[f(X)] \\approx \\sum_i w_i\\, \\frac{e^{-(x_i-\\mu)^2/2\\sigma^2}}
            {\\sigma\\sqrt{2\\pi}}\\, f(x_i).

  The nodes do not depend on ``sigma`` or ``mu``, so one evaluation of ``f``
  serves every ``(sigma, mu)`` and the expectation is a matrix product. Panel
  edges sit on every declared kink (``0`` always), so the ReLU family is
  integrated to machine precision.
* :class:`GaussHermite`: the paper's method, ``n`` probabilists' Gauss–Hermite
  nodes ``x_i = mu + sigma t_i``. Exact for polynomials of degree ``2n - 1`` but
  only algebraically convergent for kinked or steep activations.

The same fixed grid, extended by geometric *ladders* (toward each kink and out to
``2**48``), is the partition on which :mod:`jaxsig.signature` measures slopes,
intercepts, ``TV(phi')`` and ``C(phi)``: see :class:`Line`.

All nodes and weights are built once in float64 NumPy (:mod:`jaxsig.core._tables`)
and cast to the working dtype at use.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core._compile import stage
from jaxsig.core._numerics import is_concrete
from jaxsig.core._tables import (
    composite_edges,
    composite_nodes,
    gaussian_base,
    gaussian_edges,
    gaussian_panel_of,
    hermite_nodes,
    legendre01,
    legendre_tables,
)

__all__ = [
    "Composite",
    "GaussHermite",
    "Line",
    "Rule",
    "cut_line",
    "kink_ladders",
    "get_rule",
    "gaussian_weights",
    "legendre01",
    "legendre_tables",
    "pad_slots",
    "RULES",
]

_SQRT_2PI = math.sqrt(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class Composite:
    """Composite Gauss–Legendre rule on a fixed, kink-aware grid in ``x``.

    The grid is built so that every Gaussian density ``N(mu, sigma^2)`` with
    ``|mu| <= mu_max`` and ``sigma_min <= sigma <= x_max / 10`` meets panels no
    wider than ``panel_sigmas * sigma`` wherever it is non-negligible:

    * uniform panels of width ``h0 = panel_sigmas * sigma_min`` on
      ``|x| <= mu_max + 8 sigma_min``;
    * beyond, panels grow geometrically, width ``panel_sigmas (|x| - mu_max) / 8``
      (the smallest ``sigma`` whose density still reaches ``|x|`` is
      ``(|x| - mu_max) / 8``), up to ``x_max``;
    * ``inner_levels`` panels halving toward ``0``, so that ``mu = 0`` stays
      accurate for ``sigma`` far below ``sigma_min`` (the variance map near
      ``q = 0``);
    * edges at every power of two (the shells used for tail tests) and at every
      kink in ``kinks`` (and at ``0``).

    Each panel of this grid carries ``order`` Gauss–Legendre nodes; it is the
    partition of :meth:`line` (slopes, ``tv``, ``c``).

    The Gaussian expectations use a leaner grid of their own (:meth:`gaussian`):
    panels ``gaussian_panel_sigmas`` times wider with ``gaussian_order`` nodes each,
    refined toward ``0`` by factors of 3 down to the same innermost width, and cut
    at the kinks, which it takes as *data* (an array, see :meth:`gaussian`), so
    that a new kink set or learnable breakpoints never change the compiled
    program. With the defaults it has 1,344 nodes (plus ``48`` per kink) and
    reaches ~1e-15 on the paper activations over ``sigma in [0.05, 20]``,
    ``|mu| <= 2``, and at ``mu = 0`` down to ``sigma ~ 1e-6``.

    Attributes:
      order: Gauss–Legendre nodes per panel.
      sigma_min: smallest ``sigma`` resolved at ``|mu| = mu_max``.
      mu_max: largest ``|mu|`` for which ``sigma_min`` holds.
      x_max: extent of the grid (a power of two). Densities with
        ``|mu| + 9 sigma > x_max`` lose mass beyond it.
      panel_sigmas: panel width in units of the narrowest density it must resolve.
      inner_levels: number of halving panels toward ``0``.
      kinks: points where ``phi'`` may jump, used as panel edges.
      gaussian_order: Gauss–Legendre nodes per panel of the Gaussian grid.
      gaussian_panel_sigmas: ``panel_sigmas`` of the Gaussian grid.
    """

    order: int = 16
    sigma_min: float = 0.05
    mu_max: float = 2.0
    x_max: float = 512.0
    panel_sigmas: float = 3.0
    inner_levels: int = 16
    kinks: tuple[float, ...] = ()
    gaussian_order: int = 24
    gaussian_panel_sigmas: float = 8.0

    def __post_init__(self):
        if self.order < 2:
            raise ValueError(f"order must be at least 2, got {self.order=}")
        if self.gaussian_order < 2:
            raise ValueError(f"gaussian_order must be at least 2, got {self.gaussian_order=}")
        if not (self.sigma_min > 0 and self.panel_sigmas > 0 and self.gaussian_panel_sigmas > 0):
            raise ValueError(
                f"sigma_min and panel_sigmas must be positive, got {self.sigma_min=}, {self.panel_sigmas=}"
            )
        if not (self.x_max >= 8 and math.log2(self.x_max).is_integer()):
            raise ValueError(f"x_max must be a power of two >= 8, got {self.x_max=}")
        if self.mu_max < 0:
            raise ValueError(f"mu_max must be non-negative, got {self.mu_max=}")
        uniform_panels = 2.0 * (self.mu_max + 8.0 * self.sigma_min) / (self.panel_sigmas * self.sigma_min)
        if uniform_panels > 1e5:
            raise ValueError(
                f"a grid with sigma_min={self.sigma_min:g} and mu_max={self.mu_max:g} would need "
                f"{uniform_panels:.3g} uniform panels ({uniform_panels * self.order:.3g} nodes). For a narrow "
                "density away from 0, shift the activation instead (phi(x + mu) at mu = 0, where the grid is "
                "refined toward 0), or reduce mu_max."
            )
        object.__setattr__(self, "kinks", _normal_kinks(self.kinks))

    @property
    def h_inner(self) -> float:
        """Width of the innermost panels at ``0``: densities at ``mu = 0`` narrower
        than about a third of it are not resolved."""
        return self.panel_sigmas * self.sigma_min * 2.0**-self.inner_levels

    def resolves(self, sigma, mu):
        """Where the grid resolves the density ``N(mu, sigma^2)``: its mass lies
        within ``x_max`` (``|mu| + 10 sigma <= x_max``), and it is no narrower than
        the panels under it: at ``mu = 0`` (``|mu| <= 8 sigma``) down to
        ``sigma = h_inner / panel_sigmas``, elsewhere down to ``sigma_min`` (the
        grid is refined toward ``0`` only). Elementwise, traceable; concrete
        inputs give a NumPy array (eager checks compile nothing)."""
        xp = np if is_concrete(sigma, mu) else jnp
        sigma, mu = xp.asarray(sigma), xp.asarray(mu)
        at_zero = xp.abs(mu) <= 8.0 * sigma
        wide_enough = xp.where(at_zero, sigma * self.panel_sigmas >= self.h_inner, sigma >= self.sigma_min)
        return wide_enough & (xp.abs(mu) + 10.0 * sigma <= self.x_max)

    @property
    def sigma_max(self) -> float:
        """Largest ``sigma`` whose mass beyond ``x_max`` is negligible at ``mu_max``."""
        return (self.x_max - self.mu_max) / 10.0

    def with_kinks(self, kinks) -> "Composite":
        """The same rule with ``kinks`` added to the panel edges.

        Kinks are kept sorted and unique, and 0 (always an edge) is dropped, so
        that equal grids are equal rules and share compiled code.
        """
        return dataclasses.replace(self, kinks=(*self.kinks, *kinks))

    def edges(self) -> np.ndarray:
        """Sorted panel edges (float64)."""
        return composite_edges(self)

    def nodes_and_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Nodes ``x_i`` and line weights ``w_i`` with ``sum w_i f(x_i) ~ int f dx``."""
        return composite_nodes(self)

    def line(self, dtype) -> "Line":
        """The partition of R used for slopes, intercepts, ``tv`` and ``c``."""
        return _line(self, jnp.dtype(dtype).name)

    def gaussian(self, sigma, mu, dtype, kinks=None):
        """Nodes ``(N,)`` and Gaussian weights ``sigma.shape + (N,)``.

        ``w_i(sigma, mu) = w_i exp(-(x_i - mu)^2 / (2 sigma^2)) / (sigma sqrt(2 pi))``
        on the nodes of :meth:`gaussian_nodes` (this rule's kinks and ``kinks``).
        """
        x, w = self.gaussian_nodes(dtype, kinks)
        return x, gaussian_weights(x, w, sigma, mu)

    def gaussian_nodes(self, dtype, kinks=None):
        """Nodes ``x`` and line weights ``w`` of the Gaussian grid, cut at the kinks.

        The kinks are this rule's (constants) and ``kinks`` (an array, traced or
        not, any number of entries; ``NaN`` entries are empty slots). The layout
        is fixed by the number of kinks only: the kink-free grid's nodes, its
        negative half ascending then its positive half descending (node ``i`` and
        node ``mirrored + i`` are mirror images, see :attr:`mirrored`), then
        ``2 order`` nodes per kink for the two pieces of the panel it cuts (that
        panel's own nodes get weight 0). The pieces' nodes and weights are smooth
        functions of the kink positions, so sums over them are differentiable in
        learnable breakpoints.
        """
        base_x, base_w = gaussian_base(self)
        t, wl = legendre01(self.gaussian_order)
        k = jnp.asarray(pad_slots(self.kinks), dtype)
        if kinks is not None:
            k = jnp.concatenate([k, jnp.ravel(jnp.asarray(kinks, dtype))])
        if k.size == 0:
            return jnp.asarray(base_x, dtype), jnp.asarray(base_w, dtype)
        edges = gaussian_edges(self)
        x, w, _, cut = _kink_pieces(jnp.asarray(edges, dtype), k, jnp.asarray(t, dtype), jnp.asarray(wl, dtype))
        keep = ~cut[jnp.asarray(gaussian_panel_of(self))]
        return (
            jnp.concatenate([jnp.asarray(base_x, dtype), x.ravel()]),
            jnp.concatenate([jnp.where(keep, jnp.asarray(base_w, dtype), 0.0), w.ravel()]),
        )

    @property
    def mirrored(self) -> int:
        """Number of mirrored node pairs at the start of :meth:`gaussian_nodes`."""
        return gaussian_base(self)[0].size // 2


def gaussian_weights(x, w, sigma, mu):
    """Fold the density of ``N(mu, sigma^2)`` into line weights ``w`` at nodes ``x``."""
    sigma = jnp.asarray(sigma)[..., None]
    mu = jnp.asarray(mu)[..., None]
    z = (x - mu) / sigma
    return w * jnp.exp(-0.5 * z * z) / (sigma * _SQRT_2PI)


@dataclasses.dataclass(frozen=True)
class GaussHermite:
    """Probabilists' Gauss–Hermite rule: ``E[f(X)] ~ sum_i w_i f(mu + sigma t_i)``.

    ``t_i`` are the roots of ``He_n`` and ``sum w_i = 1``. This is the method of
    the paper (arXiv:2510.08456). Exact for polynomials of degree ``2n - 1``;
    for kinked or steep activations the error decays only algebraically (ReLU at
    ``sigma = 10`` with 256 nodes: ~1e-3 relative; see the README).
    """

    order: int = 64
    kinks: tuple[float, ...] = ()

    def __post_init__(self):
        if self.order < 1:
            raise ValueError(f"order must be positive, got {self.order=}")
        object.__setattr__(self, "kinks", _normal_kinks(self.kinks))

    def with_kinks(self, kinks) -> "GaussHermite":
        """The same rule with ``kinks`` added to the composite line's edges."""
        return dataclasses.replace(self, kinks=(*self.kinks, *kinks))

    def line(self, dtype) -> "Line":
        """Non-Gaussian components use the default composite partition."""
        return Composite(kinks=self.kinks).line(dtype)

    def gaussian(self, sigma, mu, dtype):
        """Nodes ``sigma.shape + (n,)`` and weights ``(n,)``."""
        t, w = hermite_nodes(self.order)
        t = jnp.asarray(t, dtype)
        sigma = jnp.asarray(sigma)[..., None]
        mu = jnp.asarray(mu)[..., None]
        return mu + sigma * t, jnp.asarray(w, dtype)


Rule = Union[Composite, GaussHermite]

RULES = {"composite": Composite, "gauss_hermite": GaussHermite}


def get_rule(rule: Union[str, Rule, None]) -> Rule:
    """Resolve a rule name (``"composite"``, ``"gauss_hermite"``) or instance."""
    if rule is None:
        return Composite()
    if isinstance(rule, (Composite, GaussHermite)):
        return rule
    if isinstance(rule, str):
        name = rule.lower().replace("-", "_")
        if name in RULES:
            return RULES[name]()
        raise ValueError(
            f"unknown quadrature rule {rule!r}; valid names are {sorted(RULES)}, "
            "or pass an instance such as jaxsig.quadrature.GaussHermite(order=128)"
        )
    raise TypeError(f"rule must be a name or a jaxsig.quadrature rule instance, got {type(rule).__name__}")


def pad_slots(kinks, minimum: int = 0) -> np.ndarray:
    """``kinks`` padded with ``NaN`` (empty slots) to a size of ``minimum`` or 0, 2,
    4, 8, ..., whichever is larger: a new kink set of a similar size reuses the
    compiled program."""
    n = len(kinks)
    size = max(minimum, 0 if n == 0 else max(2, 1 << (n - 1).bit_length()))
    return np.concatenate([np.asarray(kinks, np.float64), np.full(size - n, np.nan)])


def _kink_pieces(edges, kinks, t, wl):
    """Gauss–Legendre nodes on the pieces into which ``kinks`` cut the panels of ``edges``.

    For each kink ``k`` (sorted) in panel ``[e_p, e_{p+1}]``: the piece from ``k`` to
    the next kink or ``e_{p+1}``, and, for the first kink of its panel, the piece
    from ``e_p`` to ``k``. Empty slots (``NaN``) and kinks outside the grid give
    pieces of weight 0 and width 0, and so does a sliver of a few ulps between a
    kink and a panel edge that rounding put beside it (``-2.25`` and the edge
    ``-15 * 0.15 = -2.2500000000000004``), whose nodes would sit on the kink.
    Returns nodes and weights ``(2K, order)``, the pieces' ends ``(2K, 2)`` and
    which panels were cut ``(P,)``.
    """
    n_panels = edges.size - 1
    k = jnp.sort(kinks)  # NaN last
    valid = jnp.isfinite(k) & (k > edges[0]) & (k < edges[-1])
    kc = jnp.where(valid, k, edges[0])
    p = jnp.clip(jnp.searchsorted(edges, kc, side="right") - 1, 0, n_panels - 1)
    same_prev = jnp.concatenate([jnp.zeros(1, bool), (p[1:] == p[:-1]) & valid[:-1]])
    same_next = jnp.concatenate([(p[1:] == p[:-1]) & valid[1:], jnp.zeros(1, bool)])
    nxt = jnp.concatenate([kc[1:], kc[-1:]])
    a = jnp.stack([edges[p], kc]).reshape(-1)
    b = jnp.stack([kc, jnp.where(same_next, nxt, edges[p + 1])]).reshape(-1)
    sliver = b - a <= 64 * jnp.finfo(edges.dtype).eps * jnp.maximum(1.0, jnp.abs(b))
    width = jnp.where(jnp.stack([valid & ~same_prev, valid]).reshape(-1) & ~sliver, b - a, 0.0)
    x = a[:, None] + (b - a)[:, None] * t
    w = width[:, None] * wl
    cut = jnp.any((jnp.arange(n_panels)[:, None] == p[None, :]) & valid[None, :], axis=1)
    return x, w, jnp.stack([a, a + width], axis=1), cut


def kink_ladders(kinks, dtype):
    """The ladders ``b +- 2**-k`` toward ``0`` and each of ``kinks`` (an array; ``NaN``
    entries are empty slots), ``k = 4 .. 40`` (float32: ``.. 21``), the offsets held
    at ``4 eps |b|`` where ``2**-k`` would round into ``b`` (those rungs repeat).

    Returns:
      ``(x, empty)``: points ``(1 + K, 2, k)`` and a mask ``(1 + K,)`` of empty
      slots (their points are those of ``0``'s ladder).
    """
    eps = float(np.finfo(jnp.dtype(dtype)).eps)
    b = jnp.concatenate([jnp.zeros(1, dtype), jnp.asarray(kinks, dtype)])
    empty = ~jnp.isfinite(b)
    b = jnp.where(empty, 0.0, b)
    depth = min(int(math.floor(-math.log2(4 * eps))), 40)
    off = jnp.maximum(jnp.asarray(2.0 ** -np.arange(4, depth + 1), dtype), 4 * eps * jnp.abs(b)[:, None])
    return jnp.stack([b[:, None] - off, b[:, None] + off], axis=1), empty


def _normal_kinks(*groups) -> tuple:
    return tuple(sorted({float(k) for g in groups for k in g} - {0.0}))


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["x", "w", "body", "pos", "neg", "inner", "split", "panels", "panel_edges", "live"],
    meta_fields=["x_max"],
)
@dataclasses.dataclass(frozen=True)
class Line:
    """A sorted partition of R (float64 NumPy, cast at use) with static index sets.

    Attributes:
      x: sorted points: composite nodes, ladders toward each kink, and the
        dyadic ladder ``+-2**k``, ``k = 1..k_out``.
      w: line quadrature weights (zero on ladder points).
      body: slice of ``x`` inside ``[-x_max, x_max]`` (where ``w`` lives).
      pos, neg: indices of ``+2**k`` and ``-2**k``, ``k = 1..k_out``.
      inner: ``(n_kinks, 2, k_in)`` indices of ``b - 2**-k`` and ``b + 2**-k``
        for each kink ``b``, ``k`` increasing (points approach the kink).
      split: mask of intervals ``[x_i, x_{i+1}]`` that contain a kink.
      panels: ``(n_panels, order)`` indices of each panel's Gauss–Legendre nodes.
      panel_edges: ``(n_panels, 2)`` the panel ends.
      x_max: extent of the composite grid.
      live: ``(n_kinks,)`` which ladders of ``inner`` approach a kink (the others
        are empty kink slots of :func:`cut_line`, repeating ``0``'s ladder).

    :meth:`Composite.line` builds it in NumPy with the rule's kinks in the grid;
    :func:`cut_line` builds the same partition with the kinks as data (arrays,
    traced under ``jit``), which is what the signature computes on.
    """

    x: np.ndarray
    w: np.ndarray
    body: slice
    pos: np.ndarray
    neg: np.ndarray
    inner: np.ndarray
    split: np.ndarray
    panels: np.ndarray
    panel_edges: np.ndarray
    x_max: float
    live: np.ndarray


@functools.lru_cache(maxsize=None)
def _line(cfg: Composite, dtype_name: str) -> Line:
    eps = float(np.finfo(dtype_name).eps)
    x_nodes, w_nodes = composite_nodes(cfg)
    # Outer ladder +-2**k up to 2**48 (far enough that phi(x)/x has converged for
    # anything with an algebraic correction, small enough for float32 range).
    k_out = 48
    ladder = 2.0 ** np.arange(1, k_out + 1)
    kinks = sorted({0.0, *cfg.kinks})
    # Ladders toward each kink b: b +- 2**-k, deepest k still distinct from b.
    k_in = []
    for b in kinks:
        k_in.append(int(math.floor(-math.log2(4 * eps * max(abs(b), 1.0)))))
    depth = min(min(k_in), 40)
    ks = np.arange(4, depth + 1)
    inner_pts = [(b - 2.0**-ks, b + 2.0**-ks) for b in kinks]
    pts = np.concatenate([x_nodes, ladder, -ladder, *(np.concatenate(p) for p in inner_pts)])
    wts = np.concatenate([w_nodes, np.zeros(pts.size - x_nodes.size)])
    # Cast first so that sorting and de-duplication see the working precision.
    pts = pts.astype(dtype_name).astype(np.float64)
    order = np.argsort(pts, kind="stable")
    pts, wts = pts[order], wts[order]
    uniq = np.concatenate([[True], np.diff(pts) > 0])
    # Merge duplicate points, keeping the weight of the node among them.
    grp = np.cumsum(uniq) - 1
    w_merged = np.zeros(uniq.sum())
    np.add.at(w_merged, grp, wts)
    pts = pts[uniq]

    def idx(v):
        return int(np.searchsorted(pts, v))

    lo, hi = idx(-cfg.x_max), idx(cfg.x_max) + 1
    # Index arrays are int32: a NumPy int64 index would not mix with JAX's
    # int32 indices once x64 is switched off in the same process.
    pos = np.array([idx(v) for v in ladder], np.int32)
    neg = np.array([idx(-v) for v in ladder], np.int32)
    inner = np.array([[[idx(v) for v in lft], [idx(v) for v in rgt]] for lft, rgt in inner_pts], np.int32)
    kink_arr = np.asarray(kinks)
    split = np.any((pts[:-1, None] < kink_arr[None, :]) & (pts[1:, None] > kink_arr[None, :]), axis=1)
    edges = composite_edges(cfg)
    panels = np.searchsorted(pts, x_nodes.astype(dtype_name).astype(np.float64))
    panels = panels.astype(np.int32).reshape(-1, cfg.order)
    return Line(
        x=pts,
        w=w_merged,
        body=slice(lo, hi),
        pos=pos,
        neg=neg,
        inner=inner,
        split=split,
        panels=panels,
        panel_edges=np.stack([edges[:-1], edges[1:]], axis=1),
        x_max=cfg.x_max,
        live=np.ones(len(kinks), bool),
    )


def cut_line(rule, dtype, kinks) -> Line:
    """The :class:`Line` of ``rule``'s kink-free grid, cut at ``kinks`` given as data.

    ``kinks`` is an array (``NaN`` entries are empty slots, see :func:`pad_slots`),
    traced or not: only its size is part of a compiled program, so a new kink
    set, or breakpoints that move with the parameters, reuse it. Each kink ``b``
    adds its ladder ``b +- 2**-k`` (:func:`kink_ladders`) and cuts the panel it
    falls in into two Gauss–Legendre pieces (the panel's own nodes keep their
    place in the partition with weight 0, and the panel gets width 0), as
    :meth:`Composite.gaussian_nodes` does for the Gaussian grid. The points are
    sorted at run time and every index set follows them; ``body`` is a mask.

    ``rule`` gives the grid (a :class:`Composite`; any other rule, the default
    one) without its static kinks: callers pass every kink in ``kinks``. One
    compiled program per grid, dtype and number of slots; the result is a pytree
    (``x_max`` static), an ordinary argument of the stages that use it.
    """
    base = rule if isinstance(rule, Composite) else Composite()
    return _cut_line(dataclasses.replace(base, kinks=()), jnp.ravel(jnp.asarray(kinks, dtype)))


@stage(static_argnums=(0,), optimize=False)
def _cut_line(base_rule, kinks) -> Line:
    dtype = kinks.dtype
    base = base_rule.line(dtype)
    n0, order = base.x.size, base.panels.shape[1]
    ladders, empty = kink_ladders(kinks, dtype)
    ladders = ladders[1:]  # 0's ladder is the base line's
    t, wl = legendre01(order)
    edges = jnp.asarray(composite_edges(base_rule), dtype)
    xp, wp, ends, cut = _kink_pieces(edges, kinks, jnp.asarray(t, dtype), jnp.asarray(wl, dtype))
    # Pieces of width 0 (empty slots; a kink on a panel edge) are parked on the
    # leftmost point, -2**48: their zero-width intervals add nothing there, and
    # no point lands on a kink, where phi' has no value.
    xp = jnp.where((ends[:, 1] > ends[:, 0])[:, None], xp, jnp.asarray(base.x[0], dtype))
    uncut = jnp.ones(n0, dtype).at[base.panels.ravel()].set(jnp.repeat(~cut, order).astype(dtype))
    x_all = jnp.concatenate([jnp.asarray(base.x, dtype), ladders.ravel(), xp.ravel()])
    w_all = jnp.concatenate([jnp.asarray(base.w, dtype) * uncut, jnp.zeros(ladders.size, dtype), wp.ravel()])
    perm = jnp.argsort(x_all, stable=True)
    rank = jnp.zeros(perm.size, jnp.int32).at[perm].set(jnp.arange(perm.size, dtype=jnp.int32))
    x = x_all[perm]
    n_lad = ladders.size
    new_inner = rank[n0 : n0 + n_lad].reshape(ladders.shape)
    new_panels = rank[n0 + n_lad :].reshape(xp.shape)
    base_edges = jnp.asarray(base.panel_edges, dtype)
    base_edges = jnp.where(cut[:, None], base_edges[:, :1], base_edges)
    # The interval that holds each kink (0 and the live slots) is split.
    b = jnp.concatenate([jnp.zeros(1, dtype), jnp.where(empty[1:], jnp.nan, kinks)])
    holder = jnp.searchsorted(x, jnp.where(jnp.isfinite(b), b, 0.0)) - 1
    split = jnp.zeros(x.size - 1, bool).at[jnp.where(jnp.isfinite(b), holder, x.size)].set(True, mode="drop")
    return Line(
        x=x,
        w=w_all[perm],
        body=jnp.abs(x) <= base.x_max,
        pos=rank[base.pos],
        neg=rank[base.neg],
        inner=jnp.concatenate([rank[base.inner], new_inner]),
        split=split,
        panels=jnp.concatenate([rank[base.panels], new_panels]),
        panel_edges=jnp.concatenate([base_edges, ends]),
        x_max=base.x_max,
        live=~empty,
    )
