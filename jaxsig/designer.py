"""Stable import path for the design search; the code lives in :mod:`jaxsig.designing.search`."""

from jaxsig.designing.search import *  # noqa: F403
from jaxsig.designing.search import __all__  # noqa: F401
