"""Stable import path for the signature; the code lives in :mod:`jaxsig.core.signature`."""

from jaxsig.core.signature import *  # noqa: F403
from jaxsig.core.signature import __all__  # noqa: F401
