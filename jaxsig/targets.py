"""Stable import path for the target language; the code lives in :mod:`jaxsig.designing.targets`."""

from jaxsig.designing.targets import *  # noqa: F403
from jaxsig.designing.targets import __all__  # noqa: F401
