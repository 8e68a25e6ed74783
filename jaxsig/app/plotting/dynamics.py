"""Phase diagram of mean-field signal propagation (matplotlib, optional).

:func:`plot_phase_diagram` draws, over the ``(sW^2, sb^2)`` plane, the
per-layer perturbation growth ``chi1 = sW^2 g2(sqrt q*)^2`` (ordered below 1,
chaotic above), the region where the variance diverges (``q* = inf``), and the
edge of chaos ``chi1 = 1`` from :func:`jaxsig.dynamics.edge_of_chaos`. The
figure is drawn on the non-interactive Agg canvas (no pyplot, no global
backend switch), so it is safe on headless machines and in notebooks.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.theory import meanfield as dynamics

__all__ = ["plot_phase_diagram", "phase_diagram_data", "PhaseDiagram"]

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
