"""Signal propagation in wide random networks: mean-field theory from the signature.

A fully connected network with ``h^{l+1} = W^l phi(h^l) + b^l``,
``W_ij ~ N(0, sW^2 / n)``, ``b_i ~ N(0, sb^2)``, has, as the width ``n -> inf``,
Gaussian pre-activations whose variance ``q_l`` follows the *variance map*

.. math:: q_{l+1} = V(q_l) = \\sigma_w^2\\, m_2(\\sqrt{q_l}) + \\sigma_b^2,
          \\qquad m_2(\\sigma) = E[\\phi(\\sigma Z)^2],

and whose correlation ``c_l`` between two inputs follows the *correlation map*
``c -> (sW^2 E[phi(u) phi(v)] + sb^2) / q*`` at the fixed point ``q* = V(q*)``
(Poole et al. 2016; Schoenholz et al. 2017). Small perturbations grow by

.. math:: \\chi_1 = \\sigma_w^2\\, g_2(\\sqrt{q^*})^2 = \\sigma_w^2 E[\\phi'(u)^2]

per layer (in squared norm), the slope of the correlation map at ``c = 1``:
*ordered* when ``chi1 < 1`` (inputs collapse), *chaotic* when ``chi1 > 1``
(they decorrelate), and the *edge of chaos* ``chi1 = 1`` in between. Fixed
points are approached geometrically, with depth scales
``xi = -1 / log(rate)``: ``xi_q`` at rate ``V'(q*)``, ``xi_c`` at rate
``C'(c*)``.

Everything here is built on the Gaussian statistics of the signature
(``m2``, ``g2``: the sums of :func:`jaxsig.moments` on the same quadrature
rules) and on :func:`jaxsig.kernels.dual` (2-D), so it is accurate to near
machine precision, works under ``jit`` and ``vmap``, and is differentiable: fixed points
by implicit differentiation, ``dq*/dtheta = (dV/dtheta) / (1 - V'(q*))``, never by
unrolling the solver.

The scalar recursion ``T(x) = phi(a x + b)`` (:func:`scalar_recursion`) is the
one-neuron version: a contraction when ``L = |a| sup |phi'| < 1``, with the
Lyapunov function ``V(x) = (x - x*)^2`` descending, ``V(T x) <= L^2 V(x)``, and
the primitive-based one, the Bregman divergence
``D(x) = F(x) - F(x*) - phi(x*) (x - x*)`` of ``F = int_0^x phi``, with a proven
rate ``D(T x) <= bregman_rate D(x)`` (:mod:`jaxsig.theory.meanfield.lyapunov`).

References:
  Poole, Lahiri, Raghu, Sohl-Dickstein & Ganguli, "Exponential expressivity in
  deep neural networks through transient chaos", NeurIPS 2016.
  Schoenholz, Gilmer, Ganguli & Sohl-Dickstein, "Deep information propagation",
  ICLR 2017.
"""

from jaxsig.theory.meanfield._common import (
    PHASES,
    Q_MIN,
)
from jaxsig.theory.meanfield.correlation import (
    CorrelationFixedPoint,
    DepthScales,
    correlation_fixed_point,
    correlation_map,
    correlation_slope,
    depth_scales,
)
from jaxsig.theory.meanfield.criticality import (
    EdgeOfChaos,
    Init,
    critical_init,
    edge_of_chaos,
    init_for_fixed_q,
)
from jaxsig.theory.meanfield.lyapunov import bregman_divergence, derivative_range, primitive
from jaxsig.theory.meanfield.recursion import (
    ScalarRecursion,
    scalar_recursion,
)
from jaxsig.theory.meanfield.simulate import (
    MLPSimulation,
    simulate_mlp,
)
from jaxsig.theory.meanfield.variance import (
    FixedPoint,
    fixed_point,
    perturbation_gain,
    variance_map,
    variance_map_slope,
    variance_trajectory,
)

__all__ = [
    "PHASES",
    "Q_MIN",
    "FixedPoint",
    "CorrelationFixedPoint",
    "DepthScales",
    "EdgeOfChaos",
    "Init",
    "ScalarRecursion",
    "MLPSimulation",
    "variance_map",
    "variance_map_slope",
    "perturbation_gain",
    "variance_trajectory",
    "fixed_point",
    "correlation_map",
    "correlation_slope",
    "correlation_fixed_point",
    "depth_scales",
    "edge_of_chaos",
    "init_for_fixed_q",
    "critical_init",
    "scalar_recursion",
    "simulate_mlp",
    "primitive",
    "bregman_divergence",
    "derivative_range",
]
