"""The nine-dimensional integral signature of an activation.

For ``X = mu + sigma Z``, ``Z ~ N(0, 1)``, the signature of ``phi`` is

* ``m1 = E[phi(X)]``, ``g1 = E[phi'(X)]``, ``g2 = sqrt(E[phi'(X)^2])``,
  ``m2 = E[phi(X)^2]``, ``eta = m2 - m1^2 - sigma^2 g1^2``
  (computed as ``E[(phi(X) - m1 - g1 (X - mu))^2]``, which is the same number
  by Stein's identity, is ``>= 0`` by construction and has no cancellation);
* ``alpha_plus = lim_{x->+inf} phi(x)/x``, ``alpha_minus = lim_{x->-inf} phi(x)/x``;
* ``tv = TV(phi')``, jumps included;
* ``c = int_0^inf |phi - alpha_+ x - beta_+| dx + int_-inf^0 |phi - alpha_- x - beta_-| dx``
  with intercepts ``beta_+- = lim (phi(x) - alpha_+- x)``.

See ``SPEC.md`` for the contract. How each is computed:

* The Gaussian statistics are weighted sums over the nodes of a quadrature rule
  (:mod:`jaxsig.quadrature`); ``phi`` and ``phi'`` are evaluated once per node
  with one forward-mode pass and shared by every ``(sigma, mu)``.
* Slopes and intercepts are limits along the ladder ``x = +-2**k``
  (``k <= 48``) with a divergence test (:mod:`jaxsig.limits`).
* ``tv`` is the partition sum ``sum |phi'(x_{i+1}) - phi'(x_i)|`` over a sorted
  partition of R that has points within ``2**-40`` of every kink (so jumps are
  counted in full); within each interval where ``phi''`` changes sign the
  extremum of ``phi'`` is located on the cubic Hermite interpolant of
  ``(phi', phi'')``, so the sum is exact on monotone pieces and accurate to
  ``O(h^4)`` at extrema. Tails are tested on dyadic shells and extrapolated.
* ``c`` and the signed area ``b`` are Gauss–Legendre line integrals over the
  same grid, with dyadic tail shells tested for convergence.

A divergent component is ``inf`` (with its sign for slopes). A slope or intercept
whose limit does not exist (``x sin x``) is ``NaN``; ``c`` is then ``inf``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxsig.core import activations as _activations
from jaxsig.core import limits
from jaxsig.core import quadrature

__all__ = [
    "Signature",
    "Auxiliary",
    "Moments",
    "signature",
    "moments",
    "FIELDS",
    "AUX_FIELDS",
    "GROWTH_CLASSES",
]

GROWTH_CLASSES = ("A0", "A1", "A>1")
"""Names of the growth classes, indexed by :attr:`Auxiliary.growth`."""


class Signature(NamedTuple):
    """The integral signature ``S_sigma(phi)``: a pytree of nine arrays.

    All fields share the broadcast shape of ``sigma`` and ``mu``; the
    sigma-independent ones (slopes, ``tv``, ``c``) are broadcast to it.

    Attributes:
      m1: ``E[phi(X)]``, the mean output (bias drift).
      g1: ``E[phi'(X)]``, the mean gain (``Cov(phi(X), X) = sigma^2 g1``).
      g2: ``sqrt(E[phi'(X)^2])``, the RMS derivative gain.
      m2: ``E[phi(X)^2]``, the second moment (variance map).
      eta: ``m2 - m1^2 - sigma^2 g1^2 >= 0``, the nonlinear energy.
      alpha_plus: ``lim phi(x)/x`` as ``x -> +inf`` (may be ``+-inf``).
      alpha_minus: ``lim phi(x)/x`` as ``x -> -inf`` (may be ``+-inf``).
      tv: total variation of ``phi'`` over R, jumps included (may be ``inf``).
      c: tail-compensated integral ``int |phi - alpha x - beta| dx`` (may be ``inf``).
    """

    m1: jax.Array
    g1: jax.Array
    g2: jax.Array
    m2: jax.Array
    eta: jax.Array
    alpha_plus: jax.Array
    alpha_minus: jax.Array
    tv: jax.Array
    c: jax.Array


class Auxiliary(NamedTuple):
    """Auxiliary quantities of SPEC, same shape as the :class:`Signature` fields.

    Attributes:
      g4: ``(E[phi'(X)^4])^(1/4)``, the kernel-curvature gain.
      b: signed area ``b_plus + b_minus``.
      b_plus: ``int_0^inf (phi - alpha_+ x - beta_+) dx``.
      b_minus: ``int_-inf^0 (phi - alpha_- x - beta_-) dx``.
      beta_plus: intercept ``lim_{x->+inf} (phi(x) - alpha_+ x)``.
      beta_minus: intercept ``lim_{x->-inf} (phi(x) - alpha_- x)``.
      dm2_dsigma: ``d m2 / d sigma = E[phi(X)^2 (Z^2 - 1)] / sigma``.
      growth: growth class index into :data:`GROWTH_CLASSES`: ``0`` (A0,
        bounded: both slopes 0 with finite intercepts, or ``sup |phi|`` settled
        along the ladder where there is no limit, as for ``sin x``), ``2`` (A>1:
        a slope is infinite, or ``sup |phi(x)/x|`` grows along the ladder, as for
        ``x^2 sin x``), else ``1`` (A1).
      finite: ``True`` where ``phi`` and ``phi'`` were finite at every node of
        the Gaussian rule. Under ``jit`` no error can be raised; where this is
        ``False`` the Gaussian statistics are ``NaN``.
    """

    g4: jax.Array
    b: jax.Array
    b_plus: jax.Array
    b_minus: jax.Array
    beta_plus: jax.Array
    beta_minus: jax.Array
    dm2_dsigma: jax.Array
    growth: jax.Array
    finite: jax.Array


class Moments(NamedTuple):
    """Gaussian statistics only (the cheap part of the signature).

    Attributes:
      m1: ``E[phi(X)]``.
      g1: ``E[phi'(X)]``.
      g2: ``sqrt(E[phi'(X)^2])``.
      m2: ``E[phi(X)^2]``.
      eta: ``m2 - m1^2 - sigma^2 g1^2``.
      g4: ``(E[phi'(X)^4])^(1/4)``.
      dm2_dsigma: ``d m2 / d sigma``.
      finite: ``phi`` and ``phi'`` were finite at every node (else the rest is NaN).
    """

    m1: jax.Array
    g1: jax.Array
    g2: jax.Array
    m2: jax.Array
    eta: jax.Array
    g4: jax.Array
    dm2_dsigma: jax.Array
    finite: jax.Array


FIELDS = Signature._fields
AUX_FIELDS = Auxiliary._fields


def signature(
    phi,
    sigma=1.0,
    *,
    params: Any = None,
    mu=0.0,
    rule: Optional[quadrature.Rule | str] = None,
    with_aux: bool = False,
):
    """Compute the integral signature of ``phi`` at input scale ``sigma`` and mean ``mu``.

    Args:
      phi: an activation: a registered name (``"gelu"``), an
        :class:`~jaxsig.activations.Activation`, or a callable ``phi(x)`` or
        ``phi(x, params)``. It must be elementwise; define it once and reuse it,
        since the compiled computation is cached per function object.
      sigma: input scale(s) ``> 0``; any shape, broadcast with ``mu``.
      params: parameters for ``phi(x, params)`` (any pytree of arrays); overrides
        an Activation's defaults. The result is differentiable with respect to
        them, and to ``sigma`` and ``mu``.
      mu: input mean(s).
      rule: Gaussian quadrature: ``"composite"`` (default, accurate to ~1e-14
        for ``sigma in [0.05, 20]``, ``|mu| <= 2``), ``"gauss_hermite"``, or a
        :mod:`jaxsig.quadrature` rule instance.
      with_aux: also return the :class:`Auxiliary` quantities.

    Returns:
      A :class:`Signature` (and an :class:`Auxiliary` if ``with_aux``), each field
      of shape ``broadcast(sigma, mu).shape`` and of the working dtype (that of
      ``sigma``, ``mu`` and ``params``, at least float32).

    Raises:
      TypeError: ``phi`` is not callable, or an input has an integer dtype.
      ValueError: ``sigma`` is not positive and finite, ``mu`` is not finite,
        ``phi`` is not elementwise, or returns non-finite values at the nodes.
        Checks that need values are skipped under ``jit``/``vmap``; see
        :attr:`Auxiliary.finite`.

    Examples:
      >>> import jaxsig
      >>> s = jaxsig.signature("relu", 1.0)
      >>> float(s.g1), float(s.tv), float(s.c)
      (0.5, 1.0, 0.0)
    """
    act = _activations.as_activation(phi, params)
    rule = quadrature.get_rule(rule).with_kinks(act.kinks)
    sigma, mu, params, dtype = _prepare(act, sigma, mu)
    _check_elementwise(act, params, dtype)
    _check_domain(rule, sigma, mu)
    samples = _sample(act.fn, act.params is not None, rule, sigma, mu, params)
    sig, aux = _assemble(rule, sigma, mu, samples)
    _check_finite(act, params, rule, dtype, aux.finite)
    return (sig, aux) if with_aux else sig


def moments(phi, sigma=1.0, *, params: Any = None, mu=0.0, rule=None) -> Moments:
    """Gaussian statistics of ``phi`` at ``X = mu + sigma Z``: the first five
    signature components plus ``g4`` and ``dm2/dsigma``.

    Computes, with the same rule and accuracy as :func:`signature`,
    ``m1 = E[phi(X)]``, ``g1 = E[phi'(X)]``, ``g2 = sqrt(E[phi'(X)^2])``,
    ``m2 = E[phi(X)^2]``, ``eta = m2 - m1^2 - sigma^2 g1^2``,
    ``g4 = E[phi'(X)^4]^(1/4)`` and ``dm2/dsigma = E[phi(X)^2 (Z^2 - 1)] / sigma``,
    but skips the slopes, ``tv`` and ``c`` (no second derivatives, no ladders):
    use it inside fixed-point solvers and training losses.

    Args and errors are those of :func:`signature`.

    Examples:
      >>> import jaxsig
      >>> round(float(jaxsig.moments("relu", 2.0).m2), 12)
      2.0
    """
    act = _activations.as_activation(phi, params)
    rule = quadrature.get_rule(rule).with_kinks(act.kinks)
    sigma, mu, params, dtype = _prepare(act, sigma, mu)
    _check_elementwise(act, params, dtype)
    _check_domain(rule, sigma, mu)
    out = _moments(act.fn, act.params is not None, rule, sigma, mu, params)
    _check_finite(act, params, rule, dtype, out.finite)
    return out


# --- Input preparation and checks --------------------------------------------


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _float_dtype(*trees):
    leaves = [leaf for tree in trees for leaf in jax.tree_util.tree_leaves(tree)]
    for name, leaf in zip(("sigma", "mu"), leaves[:2]):
        dt = getattr(leaf, "dtype", None)
        if dt is not None and not jnp.issubdtype(dt, jnp.floating):
            raise TypeError(
                f"{name} has dtype {dt}; pass floating-point values, e.g. "
                f"{name}=jnp.asarray({name}, dtype=jnp.float32)"
            )
    dtype = jnp.result_type(*leaves, 0.0) if leaves else jnp.result_type(0.0)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(0.0)
    return jnp.dtype(dtype)


def _prepare(act, sigma, mu):
    params = act.params
    dtype = _float_dtype(sigma, mu, params)
    sigma = jnp.asarray(sigma, dtype)
    mu = jnp.asarray(mu, dtype)
    if _is_concrete(sigma):
        bad = ~(np.isfinite(np.asarray(sigma)) & (np.asarray(sigma) > 0))
        if bad.any():
            raise ValueError(
                f"sigma must be positive and finite, got sigma={np.asarray(sigma)[bad].ravel()[:3]}"
                " (the input scale: pre-activations are mu + sigma * Z)"
            )
    if _is_concrete(mu) and not np.all(np.isfinite(np.asarray(mu))):
        raise ValueError(f"mu must be finite, got mu={np.asarray(mu)}")
    if params is not None:
        params = jax.tree_util.tree_map(lambda p: jnp.asarray(p, dtype), params)
    shape = jnp.broadcast_shapes(sigma.shape, mu.shape)
    return jnp.broadcast_to(sigma, shape), jnp.broadcast_to(mu, shape), params, dtype


_PROBE = np.array([-3.7, -1.1, -0.3, 0.0, 0.2, 0.7, 1.9, 4.2])


def _check_elementwise(act, params, dtype):
    if params is not None and not all(_is_concrete(p) for p in jax.tree_util.tree_leaves(params)):
        return
    key = (act.fn, act.params is not None, jax.tree_util.tree_structure(params), dtype.name)
    if key in _ELEMENTWISE_SEEN:
        return
    # A vector call must agree with scalar calls, else phi mixes elements
    # (softmax, normalisation, cumsum). Checked once per function and dtype,
    # eagerly even inside an outer jit (the probe values are concrete).
    call = (lambda v: act.fn(v)) if act.params is None else (lambda v: act.fn(v, params))
    with jax.ensure_compile_time_eval():
        x = jnp.asarray(_PROBE, dtype)
        try:
            y = jnp.asarray(call(x))
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise TypeError(f"calling phi on an array of shape {x.shape} failed: {e}") from e
        if y.shape != x.shape:
            raise ValueError(
                f"phi must be elementwise: phi(x) for x of shape {x.shape} returned shape "
                f"{y.shape}. Wrap a scalar function with jnp.vectorize, or pass an activation "
                "that maps each entry independently."
            )
        if not jnp.issubdtype(y.dtype, jnp.floating):
            raise TypeError(f"phi must return floating-point values, got dtype {y.dtype}")
        try:
            ys = jnp.stack([jnp.asarray(call(xi)).reshape(()) for xi in x])
        except Exception as e:  # noqa: BLE001 - re-raised with context
            raise ValueError(
                f"phi must be elementwise, but calling it on a scalar failed ({e}); functions "
                "such as softmax or normalisation couple the entries and have no integral signature."
            ) from e
        if not np.allclose(np.asarray(y), np.asarray(ys), rtol=1e-5, atol=1e-6, equal_nan=True):
            raise ValueError(
                "phi must be elementwise: phi(x)[i] differs from phi(x[i]) "
                f"(max difference {float(jnp.max(jnp.abs(y - ys))):.3g}); functions such as "
                "softmax or normalisation couple the entries and have no integral signature."
            )
    _ELEMENTWISE_SEEN[key] = True
    if len(_ELEMENTWISE_SEEN) > 1024:
        _ELEMENTWISE_SEEN.pop(next(iter(_ELEMENTWISE_SEEN)))


_ELEMENTWISE_SEEN: dict = {}


def _check_domain(rule, sigma, mu):
    if not (isinstance(rule, quadrature.Composite) and _is_concrete(sigma) and _is_concrete(mu)):
        return
    s, m = np.asarray(sigma), np.asarray(mu)
    if s.size == 0:
        return
    if np.any(np.abs(m) + 10.0 * s > rule.x_max):
        warnings.warn(
            f"sigma={s.max():.3g} with mu reaching {np.abs(m).max():.3g} puts Gaussian mass "
            f"beyond the grid's x_max={rule.x_max:g}; results lose accuracy. Use "
            f"rule=jaxsig.quadrature.Composite(x_max={2 * rule.x_max:g}) or larger.",
            stacklevel=3,
        )
    narrow = (s < rule.sigma_min) & (np.abs(m) > 8.0 * s)
    if np.any(narrow):
        warnings.warn(
            f"sigma={s[narrow].min():.3g} at mu={m[narrow][0]:.3g} is narrower than the grid "
            f"resolves away from 0 (sigma_min={rule.sigma_min:g}); use "
            "rule=jaxsig.quadrature.Composite(sigma_min=...) with a smaller value.",
            stacklevel=3,
        )


def _check_finite(act, params, rule, dtype, finite):
    if not _is_concrete(finite) or bool(np.all(np.asarray(finite))):
        return
    x = jnp.asarray(rule.line(dtype).x[rule.line(dtype).body], dtype)
    if isinstance(rule, quadrature.GaussHermite):
        msg = "at the Gauss-Hermite nodes"
    else:
        f, df = _value_and_slope(act.bind(params) if act.params is not None else act.fn, x)
        bad = ~(jnp.isfinite(f) & jnp.isfinite(df))
        xb = np.asarray(x)[np.asarray(bad)]
        msg = f"at {xb.size} quadrature nodes, e.g. x={xb[:3]}"
    raise ValueError(
        f"phi {act.name!r} returned non-finite values (or derivatives) {msg}. Make phi "
        "overflow-safe (jax.nn.softplus, jnp.logaddexp, clipped exponents), or narrow the "
        "grid with rule=jaxsig.quadrature.Composite(x_max=...)."
    )


# --- The computation -----------------------------------------------------------


def _value_and_slope(f, x):
    """``f(x), f'(x)`` for elementwise ``f``: one forward-mode pass."""
    return jax.jvp(f, (x,), (jnp.ones_like(x),))


def _derivatives(f, x):
    """``f(x), f'(x), f''(x)`` for elementwise ``f`` (forward over forward)."""
    (y, dy), (_, ddy) = jax.jvp(lambda t: _value_and_slope(f, t), (x,), (jnp.ones_like(x),))
    return y, dy, ddy


#: Full-precision matrix products: on GPU/TPU the default float32 matmul
#: precision (TF32/bfloat16 passes) would cost the sums their accuracy.
_HIGHEST = jax.lax.Precision.HIGHEST


def _dot(a, b):
    return jnp.matmul(a, b, precision=_HIGHEST)


def _safe_root(v, p):
    # v ** (1/p) with a finite gradient at v = 0 (double-where).
    pos = v > 0
    return jnp.where(pos, jnp.where(pos, v, 1.0) ** (1.0 / p), 0.0)


class _Samples(NamedTuple):
    """What the signature needs from ``phi``: values on the rule's line.

    Attributes:
      f0, f1, f2: ``phi``, ``phi'``, ``phi''`` at ``line.x`` (composite rules).
      peak: per interval of ``line.x``, the extremum of ``phi'`` inside it
        (Newton-polished) where ``phi''`` changes sign, else ``phi'`` at its left end.
      g0, g1: ``phi``, ``phi'`` at the Gaussian nodes of a non-composite rule
        (else ``None``; the composite rule reads them off ``f0``, ``f1``).
    """

    f0: jax.Array
    f1: jax.Array
    f2: jax.Array
    peak: jax.Array
    g0: Optional[jax.Array]
    g1: Optional[jax.Array]


# The signature is computed in two compiled stages. ``_sample`` is the only
# part that depends on phi: it evaluates phi and two derivatives on the line and
# polishes the extrema of phi'. ``_assemble`` (ladders, partition sums, crossing
# corrections, Gaussian sums) depends only on the rule, dtype and shapes, so it
# is compiled once and shared by every activation.


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _sample(fn, has_params, rule, sigma, mu, params) -> _Samples:
    dtype = sigma.dtype
    f = (lambda x: fn(x, params)) if has_params else fn
    line = rule.line(dtype)
    x = jnp.asarray(line.x, dtype)
    f0, f1, f2 = _derivatives(f, x)
    peak = _extrema_of_slope(f, line, x, f1, f2)
    g0 = g1 = None
    if not isinstance(rule, quadrature.Composite):
        _, _, g0, g1 = _gaussian_nodes(f, rule, sigma, mu, dtype)
    return _Samples(f0, f1, f2, peak, g0, g1)


@functools.partial(jax.jit, static_argnums=(0,))
def _assemble(rule, sigma, mu, samples: _Samples):
    dtype = sigma.dtype
    line = rule.line(dtype)
    x = jnp.asarray(line.x, dtype)
    f0, f1, f2 = samples.f0, samples.f1, samples.f2
    if isinstance(rule, quadrature.Composite):
        body = line.body
        xg = x[body]
        wg = quadrature.gaussian_weights(xg, jnp.asarray(line.w[body], dtype), sigma, mu)
        g0, g1v = f0[body], f1[body]
    else:
        xg, wg = rule.gaussian(sigma, mu, dtype)
        g0, g1v = samples.g0, samples.g1
    gauss = _gaussian(xg, wg, g0, g1v, sigma, mu)

    slopes = _slopes(line, x, f0, dtype)
    tv = _total_variation(line, x, f1, f2, samples.peak, dtype)
    c, b, b_plus, b_minus = _tail_compensation(line, x, f0, slopes, dtype)
    alpha_p, alpha_m, beta_p, beta_m = slopes

    growth = _growth(line, x, f0, slopes)

    shape = sigma.shape
    bc = lambda v: jnp.broadcast_to(v, shape)  # noqa: E731
    sig = Signature(
        m1=gauss["m1"],
        g1=gauss["g1"],
        g2=gauss["g2"],
        m2=gauss["m2"],
        eta=gauss["eta"],
        alpha_plus=bc(alpha_p),
        alpha_minus=bc(alpha_m),
        tv=bc(tv),
        c=bc(c),
    )
    aux = Auxiliary(
        g4=gauss["g4"],
        b=bc(b),
        b_plus=bc(b_plus),
        b_minus=bc(b_minus),
        beta_plus=bc(beta_p),
        beta_minus=bc(beta_m),
        dm2_dsigma=gauss["dm2_dsigma"],
        growth=bc(growth),
        finite=bc(gauss["finite"]),
    )
    return sig, aux


def _gaussian_nodes(f, rule, sigma, mu, dtype):
    """Nodes, weights and ``phi, phi'`` there, for the Gaussian statistics alone."""
    x, w = rule.gaussian(sigma, mu, dtype)
    f0, f1 = _value_and_slope(f, x)
    return x, w, f0, f1


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _moments(fn, has_params, rule, sigma, mu, params):
    f = (lambda x: fn(x, params)) if has_params else fn
    x, w, f0, f1 = _gaussian_nodes(f, rule, sigma, mu, sigma.dtype)
    g = _gaussian(x, w, f0, f1, sigma, mu)
    return Moments(**{k: g[k] for k in Moments._fields})


def _gaussian(x, w, f0, f1, sigma, mu):
    """Gaussian statistics from values ``f0 = phi``, ``f1 = phi'`` at nodes ``x``."""
    finite = jnp.all(jnp.isfinite(f0) & jnp.isfinite(f1), axis=-1)
    # Non-finite values would meet zero weights as 0 * inf = NaN anyway; make the
    # outcome explicit and uniform (see Auxiliary.finite).
    f0 = jnp.where(jnp.isfinite(f0), f0, 0.0)
    f1 = jnp.where(jnp.isfinite(f1), f1, 0.0)
    s, m = sigma[..., None], mu[..., None]
    powers = jnp.stack([f0, f1, f0 * f0, f1 * f1, (f1 * f1) ** 2], axis=-1)
    z2m1 = ((x - m) / s) ** 2 - 1.0
    if f0.ndim == 1:
        # Nodes shared by every (sigma, mu): one matrix product for all of them.
        m1, g1, m2, d2, d4 = jnp.moveaxis(_dot(w, powers), -1, 0)
        dm2 = _dot(w * z2m1, powers[:, 2]) / sigma
    else:
        m1, g1, m2, d2, d4 = jnp.moveaxis(jnp.sum(w[..., None] * powers, axis=-2), -1, 0)
        dm2 = jnp.sum(w * z2m1 * f0 * f0, axis=-1) / sigma
    # eta = m2 - m1^2 - sigma^2 g1^2 as E[resid^2]: no cancellation, >= 0.
    resid = f0 - m1[..., None] - g1[..., None] * (x - m)
    eta = jnp.sum(w * resid * resid, axis=-1)
    nan = jnp.asarray(jnp.nan, m1.dtype)
    out = dict(m1=m1, g1=g1, g2=_safe_root(d2, 2), m2=m2, eta=eta, g4=_safe_root(d4, 4), dm2_dsigma=dm2)
    out = {k: jnp.where(finite, v, nan) for k, v in out.items()}
    out["finite"] = finite
    return out


def _eps(dtype):
    return float(jnp.finfo(dtype).eps)


def _slopes(line, x, f0, dtype):
    """Slopes ``alpha_+-`` and intercepts ``beta_+-`` from the dyadic ladders.

    Both sides at once: row 0 is ``x = +2**k``, row 1 is ``x = -2**k``.
    """
    eps = _eps(dtype)
    # Intercepts need phi(x) - alpha x without catastrophic cancellation: stop
    # their ladder where eps * x reaches ~1e-6 (float64) or ~1e-3 (float32).
    k_beta = 32 if eps < 1e-10 else 12
    idx = np.stack([line.pos, line.neg])
    xs, fs = x[idx], f0[idx]
    dx = xs[:, 1:] - xs[:, :-1]
    slope = (fs[:, 1:] - fs[:, :-1]) / dx
    noise = eps * (jnp.abs(fs[:, 1:]) + jnp.abs(fs[:, :-1])) / jnp.abs(dx)
    alpha = limits.ladder_limit(slope, noise, rtol=1e3 * eps).value
    # phi(x)/x -> 0 at the end of the ladder: bounded or sublinear (sin x,
    # tanh); report the slope as exactly 0.
    vanishing = jnp.abs(fs[:, -1] / xs[:, -1]) <= 1e3 * eps
    alpha = jnp.where(vanishing | (jnp.abs(alpha) <= 1e3 * eps), 0.0, alpha)
    a_fin = jnp.where(jnp.isfinite(alpha), alpha, 0.0)[:, None]
    r = fs[:, :k_beta] - a_fin * xs[:, :k_beta]
    rnoise = eps * (jnp.abs(fs[:, :k_beta]) + jnp.abs(a_fin * xs[:, :k_beta]))
    beta = limits.ladder_limit(r, rnoise, rtol=64 * eps).value
    # With an infinite slope the intercept is the limit of phi itself.
    beta_inf = jnp.where(jnp.isnan(alpha), jnp.nan, jnp.sign(fs[:, -1]) * jnp.inf)
    beta = jnp.where(jnp.isfinite(alpha), beta, beta_inf)
    return alpha[0], alpha[1], beta[0], beta[1]


#: Boundedness where phi has no limit at +-inf (sin x) is decided by comparing
#: sup |phi| over the rungs ``2**k``, ``k >= 32``, with sup |phi| over the line
#: closer in: a bounded function cannot exceed its sup, while a slowly growing
#: one (``log|x| sin x``) gains far more than 1% over that range.
_FAR_RUNG, _SUP_GROWTH = 32, 1.01


def _growth(line, x, f0, slopes):
    """Growth class index (0: A0 bounded, 1: A1 at most linear, 2: A>1 superlinear).

    Per side: superlinear when the slope is infinite, or has no limit and
    ``sup |phi(x)/x|`` keeps growing along the ladder (``x^2 sin x``); bounded
    when the slope is 0 and the intercept finite, or has no limit while
    ``sup |phi|`` has stopped growing (``sin x``).
    """
    alpha_p, alpha_m, beta_p, beta_m = slopes
    ok = jnp.isfinite(f0)
    f0 = jnp.where(ok, f0, jnp.inf)
    ratio = jnp.abs(f0) / jnp.where(x == 0, 1.0, jnp.abs(x))

    def settled(a, ladder, side):
        far = ladder[_FAR_RUNG - 1 :]
        near = np.flatnonzero(side & (np.abs(line.x) < 2.0**_FAR_RUNG)).astype(np.int32)
        return jnp.max(a[far]) <= _SUP_GROWTH * jnp.max(a[near])

    sides = []
    for ladder, side, alpha, beta in (
        (line.pos, line.x > 0, alpha_p, beta_p),
        (line.neg, line.x < 0, alpha_m, beta_m),
    ):
        superlinear = jnp.isinf(alpha) | (jnp.isnan(alpha) & ~settled(ratio, ladder, side))
        bounded = (alpha == 0) & (
            jnp.isfinite(beta) | (jnp.isnan(beta) & settled(jnp.abs(f0), ladder, side))
        )
        sides.append((superlinear, bounded))
    (sup_p, bd_p), (sup_m, bd_m) = sides
    return jnp.where(sup_p | sup_m, 2, jnp.where(bd_p & bd_m, 0, 1)).astype(jnp.int32)


def _hermite_extremum(h, f_a, f_b, d_a, d_b):
    """Value of ``phi'`` at the extremum inside an interval (and its location
    ``t`` in ``[0, 1]``), from cubic Hermite data.

    On ``[0, 1]`` the interpolant of ``phi'`` has derivative
    ``p'(t) = A t^2 + B t + C`` with ``C = h d_a`` and ``p'(1) = h d_b`` of the
    opposite sign, so it has exactly one root in ``(0, 1)``; solved stably.
    """
    A = 6.0 * (f_a - f_b) + 3.0 * h * (d_a + d_b)
    B = 6.0 * (f_b - f_a) - h * (4.0 * d_a + 2.0 * d_b)
    C = h * d_a
    disc = jnp.maximum(B * B - 4.0 * A * C, 0.0)
    sq = jnp.sqrt(jnp.where(disc > 0, disc, 1.0)) * (disc > 0)
    q = -0.5 * (B + jnp.where(B >= 0, sq, -sq))
    q_safe = jnp.where(q == 0, 1.0, q)
    A_safe = jnp.where(A == 0, 1.0, A)
    t1 = jnp.where(A == 0, 0.5, q / A_safe)
    t2 = C / q_safe
    inside = lambda t: (t > 0) & (t < 1)  # noqa: E731
    t = jnp.where(inside(t2), t2, jnp.where(inside(t1), t1, d_a / jnp.where(d_a == d_b, 1.0, d_a - d_b)))
    # The extremum's location carries no gradient (p'(t*) = 0: envelope theorem),
    # and differentiating the root formula would divide by vanishing terms.
    t = jax.lax.stop_gradient(jnp.clip(t, 0.0, 1.0))
    h00 = (1 + 2 * t) * (1 - t) ** 2
    h10 = t * (1 - t) ** 2
    h01 = t * t * (3 - 2 * t)
    h11 = t * t * (t - 1)
    return h00 * f_a + h10 * h * d_a + h01 * f_b + h11 * h * d_b, t


#: Turning points of phi' polished by Newton's method (static cap: smooth
#: activations have a handful; any beyond keep the O(h^4) Hermite estimate).
N_EXTREMA = 64


def _polish_extrema(f, x, h, t, turn, peak):
    """Replace Hermite estimates of the extrema of ``phi'`` by exact values.

    Up to :data:`N_EXTREMA` turning intervals get three Newton steps on
    ``phi''(x) = 0`` from the Hermite location, kept inside the interval; the
    value ``phi'(x*)`` is then exact to rounding. The location carries no
    gradient (``phi''(x*) = 0``: envelope theorem), the value does.
    """
    n = peak.shape[0]
    (ii,) = jnp.nonzero(turn, size=N_EXTREMA, fill_value=n)
    safe = jnp.minimum(ii, n - 1)
    lo, hi = x[safe], x[safe + 1]
    slope = lambda u: _value_and_slope(f, u)[1]  # noqa: E731

    def newton(_, x0):
        _, d2, d3 = _derivatives(slope, x0)
        x1 = x0 - d2 / jnp.where(d3 == 0, 1.0, d3)
        return jnp.where((x1 > lo) & (x1 < hi) & jnp.isfinite(x1), x1, x0)

    x0 = jax.lax.stop_gradient(lo + t[safe] * h[safe])
    x0 = jax.lax.stop_gradient(jax.lax.fori_loop(0, 3, newton, x0))
    val = slope(x0)
    val = jnp.where(jnp.isfinite(val), val, peak[safe])
    # Padding entries (ii == n) are dropped by the scatter; zero them so that no
    # cotangent reaches them through a clamped gather in the transpose.
    val = jnp.where(ii < n, val, 0.0)
    return peak.at[ii].set(val, mode="drop")


def _extrema_of_slope(f, line, x, f1, f2):
    """Per interval of the line: the extremum of ``phi'`` inside it where
    ``phi''`` changes sign (Hermite estimate, then Newton-polished), else
    ``phi'`` at the interval's left end. Intervals containing a kink are skipped."""
    ok = jnp.isfinite(f1) & jnp.isfinite(f2)
    f1 = jnp.where(ok, f1, 0.0)
    f2 = jnp.where(ok, f2, 0.0)
    h = x[1:] - x[:-1]
    fa, fb, da, db = f1[:-1], f1[1:], f2[:-1], f2[1:]
    turn = (da * db < 0) & ~jnp.asarray(line.split)
    peak, t = _hermite_extremum(h, fa, fb, da, db)
    return _polish_extrema(f, x, h, t, turn, jnp.where(turn, peak, fa))


def _total_variation(line, x, f1, f2, peak, dtype):
    """``TV(phi')`` over R: refined partition sum, tails tested and extrapolated.

    ``peak`` is :func:`_extrema_of_slope`'s output: the partition is the line
    refined by the extrema of ``phi'``, so the sum is exact on monotone pieces.
    """
    eps = _eps(dtype)
    ok = jnp.isfinite(f1) & jnp.isfinite(f2)
    f1 = jnp.where(ok, f1, 0.0)
    fa, fb = f1[:-1], f1[1:]
    v = jnp.abs(peak - fa) + jnp.abs(fb - peak)
    cum = jnp.concatenate([jnp.zeros((1,), dtype), jnp.cumsum(v)])
    # Every ladder at once, trimmed to a common length. Outward (+-2**k) and
    # toward each kink b (b -+ 2**-k) the cumulative variation must settle:
    # forward sums rise to V(+inf) and V(b-); reversed sums (total minus the
    # variation up to the point) rise to V(-inf) and V(b+). Any that does not
    # settle means TV = inf.
    forward = [line.pos, *line.inner[:, 0]]
    backward = [line.neg, *line.inner[:, 1]]
    n = min(len(i) for i in forward)
    idx = np.stack([i[-n:] for i in forward + backward])
    rev = np.arange(len(idx)) >= len(forward)
    seq = jnp.where(rev[:, None], cum[-1] - cum[idx], cum[idx])
    noise = 8 * eps * jnp.abs(f1[idx])
    lim = limits.ladder_limit(seq, noise, rtol=1e3 * eps, monotone=True).value
    finite = jnp.all(ok) & jnp.all(jnp.isfinite(lim))
    # Beyond +-2**48: the extrapolated remainders of the two outward ladders.
    outer = np.array([0, len(forward)])
    extra = jnp.sum(jnp.where(jnp.isfinite(lim[outer]), lim[outer] - seq[outer, -1], 0.0))
    # Across each kink b the partition has |phi'(b+e) - phi'(b-e)|, e = 2**-depth.
    # The variation there is |phi'(b-) - phi'(b-e)| + |jump| + |phi'(b+e) - phi'(b+)|
    # with the one-sided limits phi'(b-+) from the ladders: equal for monotone
    # pieces, larger for a cusp of phi' (|x|^1.5 at 0).
    left, right = line.inner[:, 0], line.inner[:, 1]
    one_sided = limits.ladder_limit(
        f1[np.concatenate([left, right])], 8 * eps * jnp.abs(f1[np.concatenate([left, right])]),
        rtol=1e3 * eps,
    ).value
    lim_l, lim_r = jnp.split(one_sided, 2)
    at_l, at_r = f1[left[:, -1]], f1[right[:, -1]]
    across = jnp.abs(lim_l - at_l) + jnp.abs(lim_r - lim_l) + jnp.abs(at_r - lim_r) - jnp.abs(at_r - at_l)
    extra = extra + jnp.sum(jnp.where(jnp.isfinite(across), across, 0.0))
    # The total by pairwise summation; cum (sequential) only drives the tail tests.
    return jnp.where(finite, jnp.sum(v) + extra, jnp.inf)


#: Panels where phi crosses its asymptote, integrated exactly piece by piece
#: (static cap). Every registered activation and family has at most 5; panels
#: beyond the cap keep Gauss–Legendre on ``|g|``, accurate to about ``h^2`` there.
#: Each padded slot costs as much as a real one (8 instead of 32 halves the time
#: of a batched signature).
N_CROSSING_PANELS = 8


@functools.lru_cache(maxsize=None)
def _legendre_tables(order: int):
    """Nodes ``t``, the inverse Vandermonde ``V^-1`` (values -> Legendre
    coefficients) for the Gauss–Legendre rule of ``order``."""
    t, _ = np.polynomial.legendre.leggauss(order)
    vander = np.polynomial.legendre.legvander(t, order - 1)
    return t, np.linalg.inv(vander)


def _legendre_all(tau, degree):
    """``P_0(tau) .. P_degree(tau)`` stacked on a new last axis (three-term
    recurrence, rolled into a scan)."""

    def step(carry, k):
        p_prev, p = carry
        p_next = ((2 * k + 1) * tau * p - k * p_prev) / (k + 1)
        return (p, p_next), p_next

    one = jnp.ones_like(tau)
    _, rest = jax.lax.scan(step, (one, tau), jnp.arange(1, degree, dtype=tau.dtype))
    return jnp.moveaxis(jnp.concatenate([one[None], tau[None], rest])[: degree + 1], 0, -1)


def _abs_integral_with_crossings(g, line, dtype):
    """``sum over panels of int |g|`` corrected on panels where ``g`` changes sign.

    Gauss–Legendre applied to ``|g|`` loses its order where ``g`` crosses zero.
    On up to :data:`N_CROSSING_PANELS` such panels ``g`` is replaced by its
    Legendre interpolant ``sum_k a_k P_k(t)`` through the panel's nodes; its roots
    between consecutive nodes (and the panel ends) are found by Newton's method,
    and ``int |g| = sum_pieces sign_piece (F(r_{j+1}) - F(r_j))`` with the exact
    primitive ``F`` (``int P_k = (P_{k+1} - P_{k-1}) / (2k + 1)``). Roots carry no
    gradient (``|g|`` has zero derivative in their position).
    """
    order = line.panels.shape[1]
    t, vinv = _legendre_tables(order)
    t, vinv = jnp.asarray(t, dtype), jnp.asarray(vinv, dtype)
    G = g[line.panels]  # (P, n)
    coef = _dot(G, vinv.T)  # Legendre coefficients per panel
    ends = _dot(_legendre_all(jnp.asarray([-1.0, 1.0], dtype), order - 1), coef.T)  # (2, P)
    vals = jnp.concatenate([ends[0][:, None], G, ends[1][:, None]], axis=1)  # (P, n + 2)
    taus = jnp.concatenate([jnp.asarray([-1.0], dtype), t, jnp.asarray([1.0], dtype)])
    change = vals[:, :-1] * vals[:, 1:] < 0
    (pi,) = jnp.nonzero(jnp.any(change, axis=1), size=N_CROSSING_PANELS, fill_value=G.shape[0])
    sel = jnp.minimum(pi, G.shape[0] - 1)
    a, v, ch = coef[sel], vals[sel], change[sel]  # (K, n), (K, n+2), (K, n+1)

    def poly(tau):  # value and derivative of the interpolants at tau (K, m)
        p = _legendre_all(tau, order)
        val = jnp.einsum("kmj,kj->km", p[..., :order], a, precision=_HIGHEST)
        # P_k' from (1 - t^2) P_k' = k (P_{k-1} - t P_k), safe at |t| < 1.
        k = jnp.arange(order, dtype=dtype)
        dp = k * (p[..., jnp.maximum(jnp.arange(order) - 1, 0)] - tau[..., None] * p[..., :order])
        dval = jnp.einsum("kmj,kj->km", dp, a, precision=_HIGHEST) / jnp.maximum(1 - tau * tau, 1e-30)
        return val, dval

    lo, hi = taus[:-1], taus[1:]
    # Start from the secant root; Newton steps kept inside the bracket.
    r = lo - v[:, :-1] * (hi - lo) / jnp.where(ch, v[:, 1:] - v[:, :-1], 1.0)
    r = jnp.where(ch, r, lo)

    def newton(_, r):
        val, dval = poly(r)
        r_new = r - val / jnp.where(dval == 0, 1.0, dval)
        return jnp.where(ch & (r_new > lo) & (r_new < hi), r_new, r)

    r = jax.lax.fori_loop(0, 4, newton, jax.lax.stop_gradient(r))
    r = jax.lax.stop_gradient(jnp.where(ch, r, lo))
    k_sel = r.shape[0]
    bounds = jnp.concatenate([jnp.full((k_sel, 1), -1.0, dtype), r, jnp.ones((k_sel, 1), dtype)], axis=1)
    # Piece j = [bounds_j, bounds_{j+1}] contains taus_j (j = 0..n+1): its sign.
    p = _legendre_all(bounds, order)  # (K, n+3, order+1)
    kk = np.arange(1, order)
    prim = jnp.concatenate(
        [p[..., :1] * bounds[..., None] + 1.0, (p[..., kk + 1] - p[..., kk - 1]) / (2 * kk + 1)], axis=-1
    )
    F = jnp.einsum("kmj,kj->km", prim, a, precision=_HIGHEST)
    signs = jnp.sign(v)
    exact = jnp.sum(signs * (F[:, 1:] - F[:, :-1]), axis=1)
    half = jnp.asarray((line.panel_edges[:, 1] - line.panel_edges[:, 0]) / 2, dtype)
    w = jnp.asarray(line.w, dtype)[line.panels]
    naive = jnp.sum(w * jnp.abs(G), axis=1)
    correction = jnp.where(pi < G.shape[0], half[sel] * exact - naive[sel], 0.0)
    return jnp.abs(g) * jnp.asarray(line.w, dtype), correction, sel


def _tail_compensation(line, x, f0, slopes, dtype):
    """``c`` (absolute) and the signed areas ``b_+``, ``b_-`` over dyadic shells."""
    eps = _eps(dtype)
    alpha_p, alpha_m, beta_p, beta_m = slopes
    right = x > 0
    fin = lambda v: jnp.where(jnp.isfinite(v), v, 0.0)  # noqa: E731
    alpha = jnp.where(right, fin(alpha_p), fin(alpha_m))
    beta = jnp.where(right, fin(beta_p), fin(beta_m))
    g = f0 - alpha * x - beta
    # Below the rounding noise of its terms g carries no information (float32
    # far tails); counting that noise would add O(eps x^2) to c. The slope is
    # itself a difference quotient, good to a few ulp: its error times x is
    # noise too, else a linear drift of 1e-15 x would make c diverge.
    noise = 2 * eps * (jnp.abs(f0) + jnp.abs(beta)) + 8 * eps * jnp.abs(alpha * x)
    g = jnp.where((jnp.abs(g) <= noise) | ~jnp.isfinite(g), 0.0, g)
    w = jnp.asarray(line.w, dtype)
    abs_w, correction, panel = _abs_integral_with_crossings(g, line, dtype)
    # Cumulative integrals over 0 < +-x <= 2**k, k = 0..log2(x_max): one static
    # mask row per (side, k), the right side first; crossing corrections are
    # booked at their panel's midpoint.
    edges = 2.0 ** np.arange(0, int(np.log2(line.x_max)) + 1)
    masks = np.stack([(sign * line.x > 0) & (sign * line.x <= e) for sign in (1.0, -1.0) for e in edges])
    masks = jnp.asarray(masks, dtype).reshape(2, len(edges), -1)
    mid = jnp.asarray(line.panel_edges.mean(axis=1), dtype)[panel]
    pmask = jnp.stack(
        [(sign * mid[None, :] > 0) & (sign * mid[None, :] <= jnp.asarray(edges, dtype)[:, None]) for sign in (1.0, -1.0)]
    ).astype(dtype)
    a_abs = _dot(masks, abs_w) + _dot(pmask, correction)
    a_sgn = _dot(masks, w * g)
    c_pm = limits.ladder_limit(a_abs, eps * a_abs, rtol=1e3 * eps, monotone=True, window=2).value
    b_pm = limits.ladder_limit(a_sgn, eps * a_abs, rtol=1e3 * eps, window=2).value
    (c_p, c_m), (b_p, b_m) = c_pm, b_pm
    ok_p = jnp.isfinite(alpha_p) & jnp.isfinite(beta_p)
    ok_m = jnp.isfinite(alpha_m) & jnp.isfinite(beta_m)
    inf = jnp.asarray(jnp.inf, dtype)
    c_p = jnp.where(ok_p, c_p, inf)
    c_m = jnp.where(ok_m, c_m, inf)
    b_p = jnp.where(ok_p, b_p, jnp.nan)
    b_m = jnp.where(ok_m, b_m, jnp.nan)
    return c_p + c_m, b_p + b_m, b_p, b_m
