"""Stable import path for the Flax adapters; the code lives in :mod:`jaxsig.integrations.flax`."""

from jaxsig.integrations.flax import *  # noqa: F403
from jaxsig.integrations.flax import __all__  # noqa: F401
