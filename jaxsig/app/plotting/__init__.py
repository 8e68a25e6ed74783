"""Figures (matplotlib, an optional dependency imported on first use)."""

from jaxsig.app.plotting.signature import plot_components, plot_g2_tv, plot_shapes

__all__ = ["plot_components", "plot_g2_tv", "plot_shapes"]
