"""Stable import path for parametrised families for design; the code lives in :mod:`jaxsig.designing.families`."""

from jaxsig.designing.families import *  # noqa: F403
from jaxsig.designing.families import __all__  # noqa: F401
