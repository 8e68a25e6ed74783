"""Figures of signatures (matplotlib, optional: ``pip install 'jaxsig[cli]'``).

Each function returns a :class:`matplotlib.figure.Figure` drawn on the
non-interactive Agg canvas (no pyplot, no global backend switch, safe in
notebooks and on headless machines) and, given ``path``, saves it as PNG.

* :func:`plot_components`: each of the nine components against ``sigma``.
* :func:`plot_g2_tv`: ``g2`` against ``tv`` with the contraction and
  kernel-conditioning thresholds of the report card.
* :func:`plot_shapes`: each activation with its affine asymptotes
  ``alpha_+- x + beta_+-``.

Inputs are plain mappings from activation name to :class:`~jaxsig.Signature`
(and :class:`~jaxsig.Auxiliary`) values, e.g. from :func:`jaxsig.signature`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core.signature import FIELDS, Auxiliary, Signature

if TYPE_CHECKING:  # matplotlib is optional: imported where a figure is drawn
    from matplotlib.figure import Figure

__all__ = ["plot_components", "plot_g2_tv", "plot_shapes"]

_DPI = 110
_LABELS = {
    "m1": "m1 = E[phi(X)]",
    "g1": "g1 = E[phi'(X)]",
    "g2": "g2 = E[phi'(X)^2]^(1/2)",
    "m2": "m2 = E[phi(X)^2]",
    "eta": "eta = m2 - m1^2 - sigma^2 g1^2",
    "alpha_plus": "alpha_+ = lim phi(x)/x, x -> +inf",
    "alpha_minus": "alpha_- = lim phi(x)/x, x -> -inf",
    "tv": "tv = TV(phi')",
    "c": "c (tail-compensated integral)",
}


def _matplotlib():
    """The matplotlib pieces used here, or an ImportError that says how to install it."""
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("jaxsig.plotting needs matplotlib: pip install 'jaxsig[cli]' (or matplotlib)") from e
    return Figure, FigureCanvasAgg, colormaps


def _figure(width: float, height: float, layout: Optional[str] = "constrained"):
    """A Figure on an Agg canvas (no pyplot, no global backend)."""
    figure_cls, canvas_cls, _ = _matplotlib()
    fig = figure_cls(figsize=(width, height), layout=layout)
    canvas_cls(fig)
    return fig


def _colors(names: Sequence[str]) -> dict[str, tuple]:
    cmap = _matplotlib()[2]["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=_DPI, format="png")
    return fig


def _scale_axis(ax, values: np.ndarray):
    """Log (or symlog) y when the finite values span more than two decades."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return
    nz = np.abs(v[v != 0])
    if nz.size == 0 or nz.max() / max(nz.min(), 1e-300) < 1e2:
        return
    if np.all(v > 0):
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=max(1e-3, float(np.quantile(nz, 0.1))))


def plot_components(sigma, signatures: Mapping[str, Signature], *, mu: float = 0.0, path=None) -> Figure:
    """Nine panels, one per component: the Gaussian five against ``sigma``
    (log axis), the sigma-independent four (slopes, ``tv``, ``c``) as bars.

    Args:
      sigma: the grid, shape ``(n,)``.
      signatures: activation name -> :class:`~jaxsig.Signature` with fields of
        shape ``(n,)`` (computed on ``sigma``).
      mu: the input mean, for the title.
      path: where to save the PNG, or ``None``.

    Curves whose finite values span more than two decades get a logarithmic
    (or symmetric-log) y axis. Infinite values are drawn as bars reaching the
    panel edge, labelled ``inf``; undefined ones (NaN) are labelled
    ``undefined``.
    """
    sigma = np.asarray(sigma, np.float64)
    names = list(signatures)
    colors = _colors(names)
    # A fixed layout: constrained layout would measure 18 axes' tick labels twice.
    fig = _figure(14.0, 11.0, layout=None)
    axes = fig.subplots(3, 3)
    fig.subplots_adjust(left=0.06, right=0.88, bottom=0.05, top=0.93, wspace=0.38, hspace=0.33)
    values = {
        f: {n: np.broadcast_to(np.asarray(getattr(signatures[n], f), np.float64), sigma.shape) for n in names}
        for f in FIELDS
    }
    for ax, field in zip(axes.ravel(), FIELDS):
        if field in _SIGMA_FREE:
            _bars(ax, names, [float(values[field][n][0]) for n in names], colors)
            ax.set_title(_LABELS[field] + "  (any sigma)", fontsize=10)
            continue
        allv = []
        for name in names:
            v = values[field][name]
            ok = np.isfinite(v)
            if ok.any():
                ax.plot(sigma[ok], v[ok], color=colors[name], lw=1.6, label=name)
                allv.append(v[ok])
        if allv:
            _scale_axis(ax, np.concatenate(allv))
        ax.set_xscale("log")
        ax.set_xlabel("sigma", fontsize=9)
        ax.set_title(_LABELS[field], fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(0.89, 0.5), fontsize=9, frameon=False)
    fig.suptitle(f"Integral signature against the input scale sigma (mu = {mu:g})", fontsize=13)
    return _save(fig, path)


_SIGMA_FREE = ("alpha_plus", "alpha_minus", "tv", "c")


def _bars(ax, names, vals, colors):
    """Horizontal bars, one per activation; inf reaches the edge, NaN is labelled."""
    from matplotlib.ticker import MaxNLocator

    vals = np.asarray(vals, np.float64)
    fin = vals[np.isfinite(vals)]
    hi = max(float(fin.max()) if fin.size else 1.0, 0.0)
    lo = min(float(fin.min()) if fin.size else 0.0, 0.0)
    span = (hi - lo) or 1.0
    edge_hi, edge_lo = hi + 0.25 * span, lo - (0.25 * span if np.any(np.isneginf(vals)) else 0.0)
    y = np.arange(len(names))[::-1]
    for yi, n, v in zip(y, names, vals):
        if np.isnan(v):
            ax.text(0, yi, " undefined", va="center", ha="left", fontsize=8, color="0.3")
            continue
        w = edge_hi if v == np.inf else (edge_lo if v == -np.inf else v)
        ax.barh(yi, w, color=colors[n], alpha=0.85, height=0.7)
        label = "inf" if v == np.inf else ("-inf" if v == -np.inf else f"{v:.4g}")
        ax.text(w, yi, f" {label}", va="center", ha="left", fontsize=7.5)
    ax.set_yticks(y, names, fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlim(edge_lo - 0.02 * span, edge_hi + 0.22 * span)
    ax.axvline(0, color="0.5", lw=0.8)
    ax.grid(True, axis="x", alpha=0.3)


def plot_g2_tv(
    sigma,
    grid: Mapping[str, Signature],
    card: Mapping[str, Signature],
    *,
    card_sigma: float = 1.0,
    g2_max: float = 0.8,
    tv_max: float = 5.0,
    path=None,
) -> Figure:
    """``g2`` against ``tv``: contraction (``g2 <= g2_max``) and conditioning (``tv < tv_max``).

    Each activation is a dot at ``(tv, g2(card_sigma))`` with a vertical bar over
    the range of ``g2`` on the ``sigma`` grid (``tv`` does not depend on sigma).
    The shaded corner is where both principles pass. ``tv = inf`` is drawn at
    the right edge with an arrow marker.

    Args:
      sigma: the grid behind ``grid`` (for the caption).
      grid: name -> :class:`~jaxsig.Signature` on the grid (fields ``(n,)``).
      card: name -> :class:`~jaxsig.Signature` at ``card_sigma`` (scalars).
      card_sigma, g2_max, tv_max: the report card's scale and thresholds.
      path: where to save the PNG, or ``None``.
    """
    sigma = np.asarray(sigma, np.float64)
    names = list(card)
    colors = _colors(names)
    tv = np.array([float(np.ravel(card[n].tv)[0]) for n in names])
    g2 = np.array([float(np.ravel(card[n].g2)[0]) for n in names])
    finite_tv = tv[np.isfinite(tv)]
    edge = 1.15 * max(tv_max, float(finite_tv.max()) if finite_tv.size else 0.0) + 0.5
    fig = _figure(12.0, 7.0)
    ax = fig.subplots()
    lo_all = []
    for i, n in enumerate(names):
        x = tv[i] if np.isfinite(tv[i]) else edge
        g = np.asarray(grid[n].g2, np.float64)
        g = g[np.isfinite(g) & (g > 0)]
        if g.size:
            ax.vlines(x, g.min(), g.max(), color=colors[n], lw=5, alpha=0.3)
            lo_all += [g.min(), g.max()]
        marker = _MARKERS[i % len(_MARKERS)] if np.isfinite(tv[i]) else ">"
        label = f"{n}  (tv {_short(tv[i])}, g2 {_short(g2[i])})"
        ax.plot(
            [x], [g2[i]], marker=marker, ms=9, color=colors[n], mec="0.2", mew=0.6, ls="none", label=label, zorder=3
        )
    ax.set_yscale("log")
    ys = np.array(lo_all + list(g2[np.isfinite(g2) & (g2 > 0)]) + [g2_max])
    y_lo, y_hi = ys.min() / 1.3, ys.max() * 1.3
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlim(-0.2, edge + 0.6)
    ax.axhline(g2_max, color="0.25", ls="--", lw=1)
    ax.axvline(tv_max, color="0.25", ls="--", lw=1)
    ax.axvspan(
        -0.2,
        tv_max,
        ymin=0,
        ymax=(math.log(g2_max) - math.log(y_lo)) / (math.log(y_hi) - math.log(y_lo)),
        color="tab:green",
        alpha=0.08,
        lw=0,
    )
    ax.text(tv_max, y_hi, f" tv = {tv_max:g}", va="top", ha="left", fontsize=9, color="0.25")
    ax.text(-0.1, g2_max, f"g2 = {g2_max:g}", va="bottom", ha="left", fontsize=9, color="0.25")
    if np.any(~np.isfinite(tv)):
        ax.axvline(edge, color="0.6", ls=":", lw=1)
        ax.text(edge, y_lo, " tv = inf", va="bottom", ha="left", fontsize=9, color="0.35", rotation=90)
    ax.set_xlabel("tv = TV(phi')  (kernel conditioning: tv < %g)" % tv_max)
    ax.set_ylabel(f"g2 at sigma = {card_sigma:g}  (contraction: g2 <= {g2_max:g})")
    ax.set_title(
        f"Contraction against kernel conditioning (dots: sigma = {card_sigma:g}; bars: g2 over "
        f"sigma in [{sigma.min():g}, {sigma.max():g}]; shaded: both pass)",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.25)
    fig.legend(loc="outside right center", fontsize=8.5, frameon=False)
    return _save(fig, path)


_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h", "<", "p", "*", "d")


def _short(v: float) -> str:
    return "inf" if v == math.inf else f"{v:.3g}"


def plot_shapes(
    activations: Sequence,
    signatures: Mapping[str, tuple[Signature, Auxiliary]],
    *,
    classes: Optional[Sequence] = None,
    path=None,
) -> Figure:
    """Small multiples: each ``phi`` (solid) with its asymptotes ``alpha_+- x + beta_+-`` (dashed).

    The right asymptote is drawn for ``x >= 0`` and the left one for ``x <= 0``,
    where slope and intercept are finite. The x range is ``[-R, R]`` with
    ``R = max(5, 1.5 max |kink|)`` (capped at 20).

    Args:
      activations: names or :class:`~jaxsig.Activation` objects, in panel order.
      signatures: name -> ``(Signature, Auxiliary)`` (scalars; any sigma: the
        asymptotes do not depend on it).
      classes: optional :class:`~jaxsig.taxonomy.Classification` per
        activation, for the panel titles.
      path: where to save the PNG, or ``None``.
    """
    import jax
    import jax.numpy as jnp

    acts = [_activations.as_activation(a) for a in activations]
    n = len(acts)
    ncol = min(n, 4 if n > 9 else 3)
    nrow = math.ceil(n / ncol)
    # A fixed layout, as in plot_components: constrained layout measures every
    # axis' labels twice (a third of the figure's time).
    fig = _figure(3.4 * ncol, 2.9 * nrow, layout=None)
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.05, top=1 - 0.8 / (2.9 * nrow), wspace=0.25, hspace=0.35)
    cls = {c.name: c for c in classes} if classes else {}
    colors = _colors([a.name for a in acts])
    for ax, act in zip(axes, acts):
        r = min(20.0, max(5.0, 1.5 * max((abs(k) for k in act.kinks), default=0.0)))
        x = np.linspace(-r, r, 801)
        f = act
        y = np.asarray(jax.jit(f)(jnp.asarray(x)), np.float64)
        ax.plot(x, y, color=colors[act.name], lw=2)
        sig, aux = signatures[act.name]

        def val(v):
            return float(np.ravel(v)[0])

        for side, a, b in (
            (1, val(sig.alpha_plus), val(aux.beta_plus)),
            (-1, val(sig.alpha_minus), val(aux.beta_minus)),
        ):
            if math.isfinite(a) and math.isfinite(b):
                xs = np.array([0.0, side * r])
                ax.plot(xs, a * xs + b, color="0.2", ls="--", lw=1.1)
        ok = np.isfinite(y)
        if not ok.any():
            ax.set_title(f"{act.name}: not finite on [-{r:g}, {r:g}]", fontsize=10)
            continue
        lo, hi = float(y[ok].min()), float(y[ok].max())
        pad = 0.12 * (hi - lo) + 0.1
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlim(-r, r)
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.axvline(0, color="0.8", lw=0.8, zorder=0)
        title = act.name if act.name not in cls else f"{act.name}  [{cls[act.name].growth}]"
        ax.set_title(title, fontsize=10)
        ax.tick_params(labelsize=8)
    for ax in axes[n:]:
        ax.set_axis_off()
    fig.suptitle(
        "Activations (solid) and their affine asymptotes alpha x + beta (dashed); [growth class]",
        fontsize=12,
        y=1 - 0.2 / (2.9 * nrow),
    )
    return _save(fig, path)
