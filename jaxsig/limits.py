"""Stable import path for limits on geometric ladders; the code lives in :mod:`jaxsig.core.limits`."""

from jaxsig.core.limits import *  # noqa: F403
from jaxsig.core.limits import __all__  # noqa: F401
