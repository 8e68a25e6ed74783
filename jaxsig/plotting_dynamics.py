"""Stable import path for figures of the mean-field theory; the code lives in :mod:`jaxsig.app.plotting.dynamics`."""

from jaxsig.app.plotting.dynamics import *  # noqa: F403
from jaxsig.app.plotting.dynamics import __all__  # noqa: F401
