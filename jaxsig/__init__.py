"""jaxsig: the integral signature of activation functions, in JAX."""
from jaxsig import activations, limits, quadrature
from jaxsig.signature import Auxiliary, Signature, signature

__version__ = "0.1.0"
__all__ = ["activations", "limits", "quadrature", "Signature", "Auxiliary", "signature", "__version__"]
