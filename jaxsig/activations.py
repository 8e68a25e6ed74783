"""Stable import path for the built-in activations and their registry;
the code lives in :mod:`jaxsig.core.activations`."""

from jaxsig.core.activations import *  # noqa: F403
from jaxsig.core.activations import __all__  # noqa: F401
