"""jaxsig: the integral signature of activation functions, in JAX.

The nine-dimensional signature ``(m1, g1, g2, m2, eta, alpha_plus, alpha_minus,
tv, c)`` of arXiv:2510.08456, computed to near machine precision, under ``jit``,
``vmap`` and ``grad``. The definitions are in ``docs/spec.md``.

The package has four wings (:mod:`jaxsig.core`, :mod:`jaxsig.theory`,
:mod:`jaxsig.designing`, :mod:`jaxsig.app`, plus the optional
:mod:`jaxsig.integrations`); the names below are its public face, and the
modules ``jaxsig.activations``, ``jaxsig.quadrature``, ``jaxsig.dynamics``,
``jaxsig.kernels``, ``jaxsig.families``, ``jaxsig.targets``, ``jaxsig.flax``
and the others are stable import paths into them.
"""

# The stable module paths first: ``jaxsig.signature`` is then rebound to the
# function of that name, as it always has been.
from jaxsig import (
    activations,
    batch,
    designer,
    dynamics,
    families,
    kernels,
    limits,
    quadrature,
    targets,
    taxonomy,
)
from jaxsig import signature as _signature_module  # noqa: F401
from jaxsig._version import __version__
from jaxsig.core.activations import Activation
from jaxsig.core.batch import moments_batch, signature_batch
from jaxsig.core.signature import (
    AUX_FIELDS,
    FIELDS,
    GROWTH_CLASSES,
    Auxiliary,
    Moments,
    Signature,
    SignatureStatus,
    moments,
    signature,
    signature_with_aux,
)
from jaxsig.designing.families import Family
from jaxsig.designing.search import DesignResult, design
from jaxsig.designing.targets import Targets, parse_targets
from jaxsig.theory.deep_kernels import MLPKernels, mlp_kernels, mlp_kernels_by_depth
from jaxsig.theory.hermite import HermiteCoefficients, hermite_coefficients
from jaxsig.theory.taxonomy import Classification, ReportCard, classify, report_card

__all__ = [
    "__version__",
    # modules
    "activations",
    "batch",
    "designer",
    "dynamics",
    "families",
    "kernels",
    "limits",
    "quadrature",
    "targets",
    "taxonomy",
    # the signature
    "Activation",
    "Signature",
    "Auxiliary",
    "Moments",
    "SignatureStatus",
    "signature",
    "signature_with_aux",
    "moments",
    "signature_batch",
    "moments_batch",
    "FIELDS",
    "AUX_FIELDS",
    "GROWTH_CLASSES",
    # taxonomy
    "Classification",
    "ReportCard",
    "classify",
    "report_card",
    # kernels and expansions
    "HermiteCoefficients",
    "hermite_coefficients",
    "MLPKernels",
    "mlp_kernels",
    "mlp_kernels_by_depth",
    # design
    "Family",
    "Targets",
    "parse_targets",
    "design",
    "DesignResult",
]
