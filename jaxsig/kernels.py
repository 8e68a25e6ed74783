"""Stable import path for dual kernels and their bounds; the code lives in :mod:`jaxsig.theory.kernels`."""

from jaxsig.theory.kernels import *  # noqa: F403
from jaxsig.theory.kernels import __all__  # noqa: F401
