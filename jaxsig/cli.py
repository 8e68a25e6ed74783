"""Stable import path for the command line; the code lives in :mod:`jaxsig.app.cli`."""

from jaxsig.app.cli import *  # noqa: F403
from jaxsig.app.cli import __all__  # noqa: F401
