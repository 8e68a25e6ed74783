"""jaxsig: the integral signature of activation functions, in JAX.

The nine-dimensional signature ``(m1, g1, g2, m2, eta, alpha_plus, alpha_minus,
tv, c)`` of arXiv:2510.08456, computed to near machine precision, under ``jit``,
``vmap`` and ``grad``. See ``SPEC.md`` for the definitions.
"""

from jaxsig import activations, limits, quadrature
from jaxsig.activations import Activation
from jaxsig.signature import (
    AUX_FIELDS,
    FIELDS,
    GROWTH_CLASSES,
    Auxiliary,
    Moments,
    Signature,
    moments,
    signature,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "activations",
    "limits",
    "quadrature",
    "Activation",
    "Signature",
    "Auxiliary",
    "Moments",
    "signature",
    "moments",
    "FIELDS",
    "AUX_FIELDS",
    "GROWTH_CLASSES",
]
