"""Stable import path for the mean-field theory of signal propagation;
the code lives in :mod:`jaxsig.theory.meanfield`."""

from jaxsig.theory.meanfield import *  # noqa: F403
from jaxsig.theory.meanfield import __all__  # noqa: F401
