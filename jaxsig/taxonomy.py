"""Stable import path for growth classes and the report card; the code lives in :mod:`jaxsig.theory.taxonomy`."""

from jaxsig.theory.taxonomy import *  # noqa: F403
from jaxsig.theory.taxonomy import __all__  # noqa: F401
