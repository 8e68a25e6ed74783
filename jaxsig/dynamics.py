"""Stable import path for the mean-field theory of signal propagation;
the code lives in :mod:`jaxsig.theory.meanfield`."""

from jaxsig.theory.meanfield import *  # noqa: F403
from jaxsig.theory.meanfield import __all__ as _meanfield_all
from jaxsig.theory.stability import VARIANCE_PHASES, StabilityPlane, stability_plane

__all__ = [*_meanfield_all, "StabilityPlane", "stability_plane", "VARIANCE_PHASES"]
