"""Stable import path for dual kernels, their bounds and the deep NNGP/NTK;
the code lives in :mod:`jaxsig.theory.kernels` and :mod:`jaxsig.theory.deep_kernels`."""

from jaxsig.theory.deep_kernels import MLPKernels, dual_prime, mlp_kernels, mlp_kernels_by_depth
from jaxsig.theory.kernels import *  # noqa: F403
from jaxsig.theory.kernels import __all__ as _kernels_all

__all__ = [*_kernels_all, "MLPKernels", "mlp_kernels", "mlp_kernels_by_depth", "dual_prime"]
