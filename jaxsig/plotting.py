"""Stable import path for figures of signatures; the code lives in :mod:`jaxsig.app.plotting.signature`."""

from jaxsig.app.plotting.signature import *  # noqa: F403
from jaxsig.app.plotting.signature import __all__  # noqa: F401
