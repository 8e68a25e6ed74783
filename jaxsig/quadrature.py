"""Stable import path for quadrature rules; the code lives in :mod:`jaxsig.core.quadrature`."""

from jaxsig.core.quadrature import *  # noqa: F403
from jaxsig.core.quadrature import __all__  # noqa: F401
