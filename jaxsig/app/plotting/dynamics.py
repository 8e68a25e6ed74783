"""Phase diagram of mean-field signal propagation and the stability plane (matplotlib, optional).

:func:`plot_phase_diagram` draws, over the ``(sW^2, sb^2)`` plane, the
per-layer perturbation growth ``chi1 = sW^2 g2(sqrt q*)^2`` (ordered below 1,
chaotic above), the region where the variance diverges (``q* = inf``), and the
edge of chaos ``chi1 = 1`` from :func:`jaxsig.dynamics.edge_of_chaos`. The
figure is drawn on the non-interactive Agg canvas (no pyplot, no global
backend switch), so it is safe on headless machines and in notebooks.

:func:`plot_stability_plane` places the members of a family in the
``(dm2/dsigma, g2)`` plane at the variance-preserving point, with the boundaries
``V'(q) = 1`` and ``chi1 = 1`` (:func:`jaxsig.theory.stability.stability_plane`).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.theory import meanfield as dynamics
from jaxsig.theory import stability as _stability

__all__ = ["plot_phase_diagram", "phase_diagram_data", "PhaseDiagram", "plot_stability_plane"]

_DPI = 110


class PhaseDiagram(NamedTuple):
    """Arrays behind :func:`plot_phase_diagram` (NumPy).

    Attributes:
      sigma_w2: ``(nw,)`` grid of weight variances.
      sigma_b2: ``(nb,)`` grid of bias variances.
      chi1: ``(nb, nw)`` ``chi1`` at each grid point.
      q_star: ``(nb, nw)`` fixed point (from ``q0 = 1``).
      edge_sigma_b2: ``(ne,)`` bias variances of the critical line.
      edge_sigma_w2: ``(ne,)`` critical weight variances.
      edge_q_star: ``(ne,)`` fixed points on the critical line.
      edge_slope: ``(ne,)`` ``V'(q*)`` on the critical line (``< 1``: attracting).
    """

    sigma_w2: np.ndarray
    sigma_b2: np.ndarray
    chi1: np.ndarray
    q_star: np.ndarray
    edge_sigma_b2: np.ndarray
    edge_sigma_w2: np.ndarray
    edge_q_star: np.ndarray
    edge_slope: np.ndarray


def phase_diagram_data(
    phi,
    *,
    params: Any = None,
    sigma_w2: Sequence[float] = (0.05, 4.0),
    sigma_b2: Sequence[float] = (0.0, 0.5),
    resolution: int = 64,
) -> PhaseDiagram:
    """Compute ``chi1`` and ``q*`` on a grid and the critical line over the ``sb^2`` range.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      params: parameters of ``phi``.
      sigma_w2: ``(min, max)`` of the weight-variance axis (``min >= 0``).
      sigma_b2: ``(min, max)`` of the bias-variance axis (``min >= 0``).
      resolution: grid points per axis (``>= 2``).

    Returns:
      :class:`PhaseDiagram`.
    """
    (w_lo, w_hi), (b_lo, b_hi) = _range("sigma_w2", sigma_w2), _range("sigma_b2", sigma_b2)
    if not (isinstance(resolution, int) and resolution >= 2):
        raise ValueError(f"resolution must be an int >= 2, got {resolution=}")
    sw2 = np.linspace(w_lo, w_hi, resolution)
    sb2 = np.linspace(b_lo, b_hi, resolution)
    fp = dynamics.fixed_point(phi, sw2[None, :], sb2[:, None], params=params)
    edge_b = np.linspace(b_lo, b_hi, 4 * resolution)
    edge = dynamics.edge_of_chaos(phi, edge_b, params=params)
    return PhaseDiagram(
        sw2,
        sb2,
        np.asarray(fp.chi1),
        np.asarray(fp.q_star),
        edge_b,
        np.asarray(edge.sigma_w2),
        np.asarray(edge.q_star),
        np.asarray(edge.slope),
    )


def _range(name, pair):
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (min, max) of numbers, got {pair!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo < hi):
        raise ValueError(f"{name} must satisfy 0 <= min < max (finite), got {name}={pair!r}")
    return lo, hi


def plot_phase_diagram(
    phi,
    *,
    params: Any = None,
    sigma_w2: Sequence[float] = (0.05, 4.0),
    sigma_b2: Sequence[float] = (0.0, 0.5),
    resolution: int = 64,
    path: Optional[str] = None,
    data: Optional[PhaseDiagram] = None,
):
    """Phase diagram of a deep random network with activation ``phi``.

    (Long: the figure is built element by element.)

    Colour: ``log chi1`` with ``chi1 = sW^2 g2(sqrt q*)^2`` (blue: ordered,
    perturbations shrink; red: chaotic, they grow). Grey hatching: ``q* = inf``
    (the variance diverges from ``q0 = 1``). Black line: the edge of chaos
    ``chi1 = 1`` (:func:`jaxsig.dynamics.edge_of_chaos`): solid where its fixed
    point attracts the variance, dotted where it repels it (``V'(q*) > 1``),
    dashed where it is infinite.

    Args:
      phi: activation name, :class:`~jaxsig.Activation` or callable.
      params: parameters of ``phi``.
      sigma_w2, sigma_b2: axis ranges ``(min, max)``.
      resolution: grid points per axis.
      path: if given, save the figure there as PNG.
      data: precomputed :func:`phase_diagram_data` (then the ranges are its own).

    Returns:
      A :class:`matplotlib.figure.Figure`.
    """
    try:
        from matplotlib import colors as mcolors
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plot_phase_diagram needs matplotlib: pip install 'jaxsig[cli]' (or matplotlib)") from e
    if data is None:
        data = phase_diagram_data(phi, params=params, sigma_w2=sigma_w2, sigma_b2=sigma_b2, resolution=resolution)
    name = _activations.as_activation(phi).name
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    with np.errstate(divide="ignore", invalid="ignore"):
        log_chi = np.log(data.chi1)
    finite = np.isfinite(log_chi)
    # |log chi1| <= 1 (chi1 within a factor e of 1) is where the structure is;
    # beyond, the colours saturate.
    span = 1.0
    shown = np.where(finite, log_chi, np.nan)
    extent = (data.sigma_w2[0], data.sigma_w2[-1], data.sigma_b2[0], data.sigma_b2[-1])
    im = ax.imshow(
        shown,
        origin="lower",
        extent=extent,
        aspect="auto",
        cmap="RdBu_r",
        norm=mcolors.TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span),
        interpolation="nearest",
    )
    fig.colorbar(im, ax=ax, extend="both", label="log chi1   (< 0 ordered, > 0 chaotic)")
    diverged = np.isinf(data.q_star)
    if diverged.any():
        hatched = ax.contourf(
            data.sigma_w2,
            data.sigma_b2,
            diverged.astype(float),
            levels=[0.5, 1.5],
            colors="none",
            hatches=["///"],
        )
        hatched.set_edgecolor("0.35")
        hatched.set_linewidth(0.0)
        ax.contour(data.sigma_w2, data.sigma_b2, diverged.astype(float), levels=[0.5], colors="0.35", linewidths=0.8)
    ew, eb, eq, es = data.edge_sigma_w2, data.edge_sigma_b2, data.edge_q_star, data.edge_slope
    inside = np.isfinite(ew) & (ew >= extent[0]) & (ew <= extent[1])
    # V'(q*) = 1 (to rounding) is marginal, as at q* = 0 with sb^2 = 0: the next
    # order decides (tanh: V(q) = q - 2 q^2, attracting; GELU: V(q) > q, repelling),
    # and it is the side the adjacent points of the line are on. A line that is
    # marginal throughout (ReLU: V(q) = sW^2 q / 2 + sb^2) is drawn as attracting.
    marginal = np.abs(es - 1) <= 1e-9
    attracts = (es < 1) | marginal
    if marginal.any() and (~marginal).any():
        idx = np.arange(len(es))
        nearest = np.abs(idx[:, None] - idx[~marginal][None, :]).argmin(axis=1)
        attracts = np.where(marginal, attracts[~marginal][nearest], attracts)
    stable = inside & np.isfinite(eq) & attracts
    unstable = inside & np.isfinite(eq) & ~attracts
    inf = inside & ~np.isfinite(eq)
    for mask, style, label in (
        (stable, dict(color="k", ls="-", lw=2.0), "edge of chaos (chi1 = 1)"),
        (unstable, dict(color="k", ls=":", lw=2.0), "chi1 = 1 at an unstable q* (V'(q*) > 1)"),
        (inf, dict(color="k", ls="--", lw=1.5), "chi1 = 1 with q* = inf"),
    ):
        if mask.any():
            ax.plot(np.where(mask, ew, np.nan), np.where(mask, eb, np.nan), label=label, **style)
    if diverged.any():
        ax.plot([], [], color="0.35", lw=0.8, label="q* = inf (hatched)")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("sigma_w^2  (weights N(0, sigma_w^2 / fan_in))")
    ax.set_ylabel("sigma_b^2  (bias variance)")
    ax.set_title(f"Mean-field phase diagram: {name}")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    if path is not None:
        fig.savefig(path, dpi=_DPI)
    return fig


def _figure(size):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'jaxsig[cli]' (or matplotlib)") from e
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _family_path(ax, x, y, values, label):
    ax.plot(x, y, color="0.25", lw=1.0, zorder=2)
    points = ax.scatter(x, y, c=values, cmap="viridis", s=18, zorder=3, label=label)
    return points


def plot_stability_plane(
    phi,
    param: str,
    values=None,
    *,
    q=1.0,
    params: Any = None,
    path: Optional[str] = None,
    data: Optional[_stability.StabilityPlane] = None,
):
    """A family in the ``(dm2/dsigma, g2)`` plane at the variance-preserving point, with its stability boundaries.

    Operating point ``sigma = sqrt(q)``, ``sW^2 = q / m2``, ``sb^2 = 0``
    (:func:`jaxsig.theory.stability.stability_plane`). Left: the members at
    ``(m2', g2)``, with the boundary through each member, ``m2' = 2 sigma m2 / q``
    (``V' = 1``, dashed: a member left of its dashed point has an attracting fixed
    point) and ``g2 = sqrt(m2 / q)`` (``chi1 = 1``, dotted: below it, ordered); the
    path crosses a curve where that member is critical. Right: the rescaled members
    ``sqrt(sW^2) phi`` at ``(sW^2 m2', sW g2)``, where the boundaries are the lines
    ``2 sigma`` and ``1`` and the quadrants are the four regimes.

    Args:
      phi, param, values, q, params: as in :func:`jaxsig.theory.stability.stability_plane`.
      path: if given, save the figure there as PNG.
      data: a precomputed :class:`~jaxsig.theory.stability.StabilityPlane` (then
        ``values``, ``q``, ``params`` are ignored).

    Returns:
      A :class:`matplotlib.figure.Figure`.
    """
    fig = _figure((11.0, 4.8))
    if data is None:
        if values is None:
            raise ValueError("values must be given (the parameter values to sweep) unless data is")
        data = _stability.stability_plane(phi, param, values, q=q, params=params)
    d = type(data)(*(np.ravel(np.asarray(v)) if np.ndim(v) else np.asarray(v) for v in data))
    sigma, qv = float(d.sigma), float(d.q)
    name = _activations.as_activation(phi).name
    left, right = fig.subplots(1, 2)
    points = _family_path(left, d.dm2_dsigma, d.g2, d.values, name)
    left.plot(d.dm2_dsigma_critical, d.g2, "k--", lw=1.2, label="V'(q) = 1:  m2' = 2 sigma m2 / q")
    left.plot(d.dm2_dsigma, d.g2_critical, "k:", lw=1.5, label="chi1 = 1:  g2 = sqrt(m2 / q)")
    # Members with a small m2 put their boundary points far out; keep the family in view.
    for values, boundary, setter in (
        (d.dm2_dsigma, d.dm2_dsigma_critical, left.set_xlim),
        (d.g2, d.g2_critical, left.set_ylim),
    ):
        shown = values[np.isfinite(values)]
        allv = np.concatenate([shown, boundary[np.isfinite(boundary)]])
        if shown.size:
            setter(min(0.0, allv.min()), 1.05 * min(allv.max(), 2.5 * max(shown.max(), 1e-12)))
    left.set_xlabel(f"dm2/dsigma at sigma = {sigma:.4g}")
    left.set_ylabel("g2 (RMS derivative gain)")
    left.set_title(f"{name}: members and their boundaries")
    left.legend(loc="best", fontsize=8, framealpha=0.85)
    x, y = d.sigma_w2 * d.dm2_dsigma, np.sqrt(d.sigma_w2) * d.g2
    finite = np.isfinite(x) & np.isfinite(y)
    lo_x = min(0.0, *(x[finite] if finite.any() else [0.0]))
    hi_x = max(4.0 * sigma, *(x[finite] if finite.any() else [0.0])) * 1.05
    hi_y = max(2.0, *(y[finite] if finite.any() else [0.0])) * 1.05
    edge = 2.0 * sigma
    for (x0, x1, y0, y1), colour, text in (
        ((lo_x, edge, 0.0, 1.0), "#cfe3f7", "attracting, ordered"),
        ((lo_x, edge, 1.0, hi_y), "#f7d9cf", "attracting, chaotic"),
        ((edge, hi_x, 0.0, 1.0), "#e6e6e6", "repelling, ordered"),
        ((edge, hi_x, 1.0, hi_y), "#d9d9d9", "repelling, chaotic"),
    ):
        right.fill_between([x0, x1], y0, y1, color=colour, zorder=0)
        right.text(0.5 * (x0 + x1), 0.5 * (y0 + y1), text, ha="center", va="center", fontsize=8, color="0.35")
    right.axvline(edge, color="k", ls="--", lw=1.2)
    right.axhline(1.0, color="k", ls=":", lw=1.5)
    _family_path(right, x, y, d.values, name)
    right.set_xlim(lo_x, hi_x)
    right.set_ylim(0.0, hi_y)
    right.set_xlabel("sW^2 dm2/dsigma  (V' = 1 at 2 sigma)")
    right.set_ylabel("sW g2  (chi1 = 1 at 1)")
    right.set_title(f"rescaled to sW^2 = q / m2, q = {qv:.4g}, sb^2 = 0")
    fig.colorbar(points, ax=right, label=param)
    if path is not None:
        fig.savefig(path, dpi=_DPI)
    return fig
