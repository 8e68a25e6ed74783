"""The eager checks and warnings of :func:`jaxsig.signature` and :func:`jaxsig.moments`.

Each runs where its inputs are concrete and does nothing under ``jit``/``vmap``,
where the result's statuses say the same (:class:`jaxsig.core.signature.SignatureStatus`).
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import compensation, functionals, gaussian, limits, quadrature
from jaxsig.core._numerics import derivatives, is_concrete
from jaxsig.core.activations import BUILTIN_FUNCTIONS

__all__ = [
    "VALIDATED_SIGMA",
    "VALIDATED_MU",
    "check_elementwise",
    "check_continuous",
    "check_domain",
    "check_finite",
    "warn_undeclared_kinks",
    "warn_unresolved",
    "warn_undetermined_areas",
    "warn_approximate",
]


_PROBE = np.array([-3.7, -1.1, -0.3, 0.0, 0.2, 0.7, 1.9, 4.2])


def check_elementwise(act, dtype):
    """Raise unless ``act`` maps each entry of an array on its own (once per
    function and dtype; the built-in activations are checked by the tests)."""
    if not is_concrete(act) or act.fn in BUILTIN_FUNCTIONS:
        return
    key = (act.fn, jax.tree_util.tree_structure(act), dtype.name)
    if key in _ELEMENTWISE_SEEN:
        return
    # A vector call must agree with scalar calls, else phi mixes elements
    # (softmax, normalisation, cumsum). Checked once per function and dtype,
    # eagerly even inside an outer jit (the probe values are concrete).
    call = act
    with jax.ensure_compile_time_eval():
        x = jnp.asarray(_PROBE, dtype)
        try:
            y = jnp.asarray(call(x))
        except Exception as e:
            raise TypeError(f"calling phi on an array of shape {x.shape} failed: {e}") from e
        if y.shape != x.shape:
            raise ValueError(
                f"phi must be elementwise: phi(x) for x of shape {x.shape} returned shape "
                f"{y.shape}. Wrap a scalar function with jnp.vectorize, or pass an activation "
                "that maps each entry independently."
            )
        if not jnp.issubdtype(y.dtype, jnp.floating):
            raise TypeError(f"phi must return floating-point values, got dtype {y.dtype}")
        if jnp.finfo(y.dtype).bits < jnp.finfo(dtype).bits:
            # Not an error (a float32 kernel may be what the user has), but every
            # component then carries its rounding, flagged only as unresolved.
            warnings.warn(
                f"{act.name!r}: phi returns {y.dtype} for {dtype.name} inputs, so every component carries "
                f"its rounding (eps {float(jnp.finfo(y.dtype).eps):.1e}), not that of {dtype.name}. "
                "Compute in the input's dtype (x.dtype), or pass float32 sigma and mu.",
                stacklevel=4,
            )
        try:
            # (Scalars from the NumPy probe: iterating over a jax array would
            # compile an unstack, and stacking the results another program.)
            ys = np.stack([np.asarray(call(jnp.asarray(xi, dtype))).reshape(()) for xi in _PROBE])
        except Exception as e:
            raise ValueError(
                f"phi must be elementwise, but calling it on a scalar failed ({e}); functions "
                "such as softmax or normalisation couple the entries and have no integral signature."
            ) from e
        if not np.allclose(np.asarray(y), np.asarray(ys), rtol=1e-5, atol=1e-6, equal_nan=True):
            raise ValueError(
                "phi must be elementwise: phi(x)[i] differs from phi(x[i]) "
                f"(max difference {float(np.max(np.abs(np.asarray(y) - ys))):.3g}); functions such as "
                "softmax or normalisation couple the entries and have no integral signature."
            )
    _ELEMENTWISE_SEEN[key] = True
    if len(_ELEMENTWISE_SEEN) > 1024:
        _ELEMENTWISE_SEEN.pop(next(iter(_ELEMENTWISE_SEEN)))


_ELEMENTWISE_SEEN: dict = {}


#: The domain on which the default rule is validated to ~1e-14 against mpmath
#: (docs/accuracy.md); outside it jaxsig warns.
VALIDATED_SIGMA, VALIDATED_MU = (0.05, 20.0), 2.0


def check_domain(rule, sigma, mu):
    """Warn, with a fix that works, where the rule cannot resolve the density."""
    if not (isinstance(rule, quadrature.Composite) and is_concrete(sigma, mu)):
        return
    s, m = np.asarray(sigma, np.float64), np.asarray(mu, np.float64)
    if s.size == 0:
        return
    s, m = np.broadcast_arrays(s, m)
    reach = np.abs(m) + 10.0 * s
    if np.any(reach > rule.x_max):
        need = 2.0 ** math.ceil(math.log2(float(reach.max())))
        warnings.warn(
            f"sigma={s.max():.3g} with mu reaching {np.abs(m).max():.3g} puts Gaussian mass beyond the grid's "
            f"x_max={rule.x_max:g}; results lose accuracy. Use rule=jaxsig.quadrature.Composite(x_max={need:g}) "
            "(the graded panels grow geometrically: the node count grows only with log(x_max)); status "
            "APPROXIMATE until then.",
            stacklevel=3,
        )
    h_inner = rule.h_inner
    at_zero = np.abs(m) <= 8.0 * s
    unresolved = ~np.asarray(rule.resolves(s, m)) & (reach <= rule.x_max)
    tiny = at_zero & unresolved
    if np.any(tiny):
        warnings.warn(
            f"sigma={s[tiny].min():.3g} is narrower than the grid resolves even at 0 (panels of "
            f"{h_inner:.2g}): the statistics are close to their sigma -> 0 limits phi(mu), phi'(mu), "
            "|phi'(mu)|, phi(mu)^2, and the computed values may be far from them (status APPROXIMATE).",
            stacklevel=3,
        )
    narrow = unresolved & ~at_zero
    if np.any(narrow):
        mu0 = float(m[narrow].ravel()[0])
        warnings.warn(
            f"sigma={s[narrow].min():.3g} at mu={mu0:.3g} is narrower than the grid resolves away from 0 "
            f"(sigma_min={rule.sigma_min:g} there; the grid is refined toward 0 only). Shift the input "
            f"instead: jaxsig.signature(lambda x: phi(x + {mu0:g}), sigma) equals the signature at mu={mu0:g} "
            "for the Gaussian components (status APPROXIMATE until then).",
            stacklevel=3,
        )
    outside = (s < VALIDATED_SIGMA[0]) & ~at_zero | (s > VALIDATED_SIGMA[1]) | (np.abs(m) > VALIDATED_MU)
    if np.any(outside & ~narrow & (reach <= rule.x_max)):
        warnings.warn(
            f"sigma={s[outside].ravel()[0]:.3g}, mu={m[outside].ravel()[0]:.3g} is outside the validated domain "
            f"(sigma in [{VALIDATED_SIGMA[0]:g}, {VALIDATED_SIGMA[1]:g}], |mu| <= {VALIDATED_MU:g}, where the "
            "Gaussian statistics are accurate to ~1e-14): expect ~1e-6 relative (see docs/accuracy.md).",
            stacklevel=3,
        )


def check_finite(act, rule, finite, dtype):
    if not is_concrete(finite) or bool(np.all(np.asarray(finite))):
        return
    x = jnp.asarray(rule.line(dtype).x[rule.line(dtype).body], dtype)
    if isinstance(rule, quadrature.GaussHermite):
        msg = "at the Gauss-Hermite nodes"
    else:
        f, df = derivatives(act, x, 1)
        values = np.asarray(jnp.isfinite(f) & jnp.isfinite(df))
        if values.all():
            # Finite phi, phi' whose powers, which the sums need, overflow (1e30 tanh in float32).
            xb = np.asarray(x)[~np.asarray(gaussian.usable(f, df))]
            wider = "Compute in float64, rescale phi," if jnp.finfo(dtype).bits < 64 else "Rescale phi"
            raise ValueError(
                f"phi {act.name!r} is finite, but phi^2 or phi'^4 overflows {dtype.name} at {xb.size} quadrature "
                f"nodes, e.g. x={xb[:3]} (|phi| up to {float(jnp.max(jnp.abs(f))):.3g}, |phi'| up to "
                f"{float(jnp.max(jnp.abs(df))):.3g}). {wider} or narrow the grid with "
                "rule=jaxsig.quadrature.Composite(x_max=...)."
            )
        xb = np.asarray(x)[~values]
        msg = f"at {xb.size} quadrature nodes, e.g. x={xb[:3]}"
    raise ValueError(
        f"phi {act.name!r} returned non-finite values (or derivatives) {msg}. Make phi "
        "overflow-safe (jax.nn.softplus, jnp.logaddexp, clipped exponents), or narrow the "
        "grid with rule=jaxsig.quadrature.Composite(x_max=...)."
    )


_APPROXIMATE_REASONS = {
    "tv": f"either phi' has more turning points than the {functionals.N_EXTREMA} polished slots, and tv keeps "
    "cubic-Hermite estimates of the rest (about 1e-7 relative), or phi' oscillates faster than the line's graded "
    "tail panels resolve, and tv misses extrema there (sin(x)/(1+x^2): 2e-3 relative)",
    "c": f"either phi crosses its asymptotes in more than {compensation.N_CROSSING_PANELS} panels (or more than "
    f"{compensation.N_ROOTS} times in one), and c integrates |phi - alpha x - beta| with Gauss-Legendre on the "
    "smallest of them (about 1e-4 relative), or phi - alpha x - beta sinks into the rounding noise of phi while "
    "its tail still matters, and c extrapolates that tail (float32 x*arctan(x): about 1e-3 relative; float64 "
    "resolves it), or phi oscillates faster than the line's graded tail panels resolve, and c and b are rough "
    "estimates (sin(x)/(1+x^2): 4e-4 relative), or phi approaches its asymptote so slowly that the tail beyond the "
    "grid's x_max is a trapezoid sum over the dyadic rungs (tanh(0.01 x): 2e-4 relative, tanh(0.001 x): 8%; a larger "
    "jaxsig.quadrature.Composite(x_max=...) resolves it)",
    "g1": "phi' has an integrable power singularity at a kink; the Gaussian statistics of phi' are accurate to "
    "about 1e-4 there",
}


def check_continuous(act, a, b) -> bool:
    """Eager calls: where :func:`jaxsig.core.kinks.steps` flagged ``[a, b]``, tell a
    jump of ``phi`` from a transition narrower than the line by bisection.

    The half that holds the larger change of ``phi`` is kept, 60 times: a jump
    keeps its size, a continuous ``phi`` changes by ``|phi'|`` times the width,
    which has shrunk by ``2**-60``. A jump raises (the signature is defined for
    continuous ``phi``: ``g1``, ``g2``, ``eta`` and ``tv`` would miss the Dirac
    delta in ``phi'``); a steep transition warns (the Gaussian statistics that
    reach it are ``APPROXIMATE``) and returns ``True``.
    """
    if not is_concrete(a) or not np.isfinite(float(a)):
        return False
    dtype = jnp.asarray(a).dtype
    a, b = float(a), float(b)

    def at(u):
        f, df = derivatives(act, jnp.asarray(u, dtype), 1)
        return float(f), float(df)

    (fa, da), (fb, db) = at(a), at(b)
    for _ in range(60):
        m = 0.5 * (a + b)
        if not a < m < b:
            break
        fm, dm = at(m)
        if abs(fm - fa) >= abs(fb - fm):
            b, fb, db = m, fm, dm
        else:
            a, fa, da = m, fm, dm
    step, size = abs(fb - fa), abs(fa) + abs(fb)
    eps = float(jnp.finfo(dtype).eps)
    if step > 8 * (b - a) * max(abs(da), abs(db)) + 64 * eps * size and step > 1e-6 * (1.0 + size):
        raise ValueError(
            f"phi {act.name!r} is discontinuous: it jumps by {fb - fa:.6g} at x = {0.5 * (a + b):.6g}. The "
            "integral signature is defined for continuous activations (docs/spec.md): g1, g2, eta and tv would "
            "miss the Dirac delta in phi'. Use a continuous activation (a steep transition such as "
            "jax.nn.sigmoid(k * (x - b)) is continuous, and its statistics converge as k grows)."
        )
    warnings.warn(
        f"{act.name!r}: phi changes faster near x = {0.5 * (a + b):.6g} than the line's nodes resolve (a "
        "transition narrower than their spacing); the Gaussian statistics whose density reaches it are "
        "APPROXIMATE. Narrower panels resolve it: rule=jaxsig.quadrature.Composite(sigma_min=...) sets their "
        "width near 0 to 3 sigma_min (default 0.05).",
        stacklevel=3,
    )
    return True


def warn_undeclared_kinks(act, found, where) -> bool:
    if not is_concrete(found) or not np.any(np.asarray(found)):
        return False
    where = float(where)
    warnings.warn(
        f"{act.name!r}: phi' appears to jump near x = {where:.6g}, where no kink is declared; the Gaussian "
        "statistics then converge only at second order (status APPROXIMATE). Declare it: "
        f"jaxsig.Activation({act.name!r}, fn, params, kinks=({where:.6g},)) with the exact position.",
        stacklevel=3,
    )
    return True


def warn_unresolved(act, error):
    if not is_concrete(error) or not np.any(np.asarray(error) > gaussian.UNRESOLVED):
        return False
    warnings.warn(
        f"{act.name!r}: phi varies faster than the Gaussian grid's panels resolve where the density has mass (fast "
        "oscillation, a kink that is not declared, or a transition narrower than the nodes' spacing, which breaks "
        "Stein's identity E[phi'(X)] = E[(X - mu) phi(X)] / sigma^2 between the sums) "
        f"(error bound {float(np.max(np.asarray(error))):.1g}; status APPROXIMATE). Use narrower panels: "
        "rule=jaxsig.quadrature.Composite(gaussian_panel_sigmas=2) (or 1 for faster oscillation).",
        stacklevel=3,
    )
    return True


def warn_undetermined_areas(act, aux):
    if not is_concrete(aux.b_plus):
        return
    nan = (np.isnan(np.asarray(aux.b_plus)) & np.isfinite(np.asarray(aux.beta_plus))) | (
        np.isnan(np.asarray(aux.b_minus)) & np.isfinite(np.asarray(aux.beta_minus))
    )
    if np.any(nan):
        warnings.warn(
            f"{act.name!r}: a signed area b_+- is NaN although its asymptote is finite: int (phi - alpha x - beta) "
            "has no limit on the line's dyadic shells. It diverges (a remainder like 1/x), or converges only "
            "conditionally through an oscillation that the tail panels do not resolve (sin(x)/x: pi/2 per side), "
            "which jaxsig does not compute.",
            stacklevel=3,
        )


def warn_approximate(act, status, skip_gaussian=False):
    if not is_concrete(status):
        return
    for field, reason in _APPROXIMATE_REASONS.items():
        if skip_gaussian and field == "g1":
            continue
        if np.any(np.asarray(getattr(status, field)) == limits.APPROXIMATE):
            warnings.warn(f"{act.name!r}: {reason} (status APPROXIMATE).", stacklevel=3)
