"""Stable import path for batched, sharded evaluation; the code lives in :mod:`jaxsig.core.batch`."""

from jaxsig.core.batch import *  # noqa: F403
from jaxsig.core.batch import __all__  # noqa: F401
