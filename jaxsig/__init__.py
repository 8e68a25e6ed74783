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

# Batched, sharded evaluation (issue 7).
from jaxsig import batch  # noqa: E402
from jaxsig.batch import moments_batch, signature_batch  # noqa: E402

__all__ += ["batch", "signature_batch", "moments_batch"]

# Growth classes and the design-principle report card (issue 3).
from jaxsig import taxonomy  # noqa: E402
from jaxsig.taxonomy import Classification, ReportCard, classify, report_card  # noqa: E402

__all__ += ["taxonomy", "Classification", "ReportCard", "classify", "report_card"]

# Designing activations by gradient descent (issue 5). The module is
# ``jaxsig.designer``; ``jaxsig.design`` is the function.
from jaxsig import designer, families, targets  # noqa: E402
from jaxsig.designer import DesignResult, design  # noqa: E402
from jaxsig.families import Family  # noqa: E402
from jaxsig.targets import Targets, parse_targets  # noqa: E402

__all__ += ["designer", "families", "targets", "design", "DesignResult", "Family", "Targets", "parse_targets"]

# Signal propagation, edge of chaos and kernels (issue 4).
from jaxsig import dynamics, kernels  # noqa: E402

__all__ += ["dynamics", "kernels"]
