"""The numbers of mean-field theory on a traced model: moments, layer by layer.

:mod:`jaxsig.integrations.flax_graph` writes each dense / conv layer's input as
an expression (layer outputs, activations, sums, norms). This module evaluates
those expressions at given layer-output variances, in a canonical form

.. math:: v = G + \\sum_t \\big(a_t f_t(G_t + s_t) + c_t\\big) + F,

with ``G`` and ``G_t`` centred Gaussians (linear combinations of independent
layer outputs), ``f_t`` activations, and ``F`` a deterministic part (the data,
constants). Terms are independent of each other (they depend on different
layer outputs; a sum of two functions of one layer output is refused), so

.. math:: E[v] = \\sum_t \\mu_t + F, \\qquad
          E[v^2] = \\mathrm{Var}\\,G + \\sum_t E[T_t^2] + F^2 + 2 F \\sum_t \\mu_t
                   + 2 \\sum_{t<s} \\mu_t \\mu_s,

``mu_t = a_t m1_t + c_t``, ``E[T_t^2] = a_t^2 m2_t + 2 a_t c_t m1_t + c_t^2``,
with the Gaussian moments ``m1, m2`` of :func:`jaxsig.moments`. A norm is, in
the wide limit, the affine map ``y = s (v - E v) / sqrt(Var v + eps) + b`` with
the statistics of its input; an activation of a Gaussian is a new term; an
activation of a single term composes the two functions.

:class:`Propagation` does the arithmetic for one call of
:func:`jaxsig.flax.autoinit` or :func:`jaxsig.flax.diagnose` on a
:class:`~jaxsig.integrations.flax_plan.Plan`. Not part of the public API.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsig.core.activations import Activation
from jaxsig.core.signature import moments
from jaxsig.integrations import flax_expr as fx
from jaxsig.integrations.flax_plan import Layer
from jaxsig.integrations.flax_trace import UnsupportedModelError
from jaxsig.theory import meanfield as _mf

__all__ = ["Term", "Canon", "Propagation", "identity", "uniform"]

_S0 = math.sqrt(_mf.Q_MIN)  # 2^-20: the smallest input scale the quadrature rules resolve

# --- The algebra: Gaussian parts, activation terms, fixed parts -------------------------------------------


class Term(NamedTuple):
    """``a * fn(G + shift) + c`` with ``G = sum_b coeff_b B_b`` a centred Gaussian."""

    fn: Callable
    params: Any
    kinks: tuple
    name: str
    gauss: tuple  # ((base, coeff), ...)
    shift: Any
    a: Any
    c: Any
    dtype: Any  # the dtype the function was traced in


class Canon(NamedTuple):
    """A value as ``G + sum_t T_t + F``: Gaussian part, activation terms (independent), fixed part."""

    gauss: tuple
    terms: tuple
    fixed: Any
    shape: tuple


def identity(x, params):
    del params
    return x


_NO_PARAMS: dict = {}


def _without_params(fn):
    """``fn(x)`` as ``f(x, params)`` (one stable wrapper per function, for the compile caches)."""
    if id(fn) not in _NO_PARAMS:

        def f(x, params):
            del params
            return fn(x)

        f.__name__ = getattr(fn, "__name__", "f")
        _NO_PARAMS[id(fn)] = (f, fn)
    return _NO_PARAMS[id(fn)][0]


def _gauss_merge(g1, g2, s=1.0):
    out = dict(g1)
    for b, c in g2:
        out[b] = out.get(b, 0.0) + s * c
    return tuple(out.items())


def _bases(gauss) -> set:
    return {b for b, _ in gauss}


def uniform(a) -> Optional[float]:
    """``a`` as a float when all its entries are equal, else ``None``."""
    a = np.asarray(a, np.float64)
    if a.size == 0:
        return None
    first = a.reshape(-1)[0]
    return float(first) if np.all(a == first) else None


class Propagation:
    """Numbers for the expressions of a plan: per-entry moments, per-layer statistics.

    ``plan`` is a :class:`~jaxsig.integrations.flax_plan.Plan`. ``q`` maps each
    layer call to the second moment of its output (a float, or an array over
    the batch when ``per_input``). Arithmetic is NumPy float64 on
    the concrete results of :func:`jaxsig.moments` (evaluated in the model's
    dtype): cheap enough to run at every :func:`autoinit` call.
    """

    def __init__(self, plan, snap, x, per_input):
        self.plan, self.graph = plan, plan.graph
        values = self.values = snap.values
        self.modules = snap.modules
        self.per_input = per_input
        self.batch = int(np.shape(x)[0]) if per_input else 1
        self.fixed = (
            {
                v: np.asarray(a, np.float64)
                for v, a in zip(
                    plan.fixed_vars, self.examples(lambda xi: self.graph.evaluate(plan.fixed_vars, values, xi), x)
                )
            }
            if plan.fixed_vars
            else {}
        )
        self.q: dict = {}
        self.memo: dict = {}
        self.cache: dict = {}

    # -- Arrays -------------------------------------------------------------------------------------

    def examples(self, fun, arr):
        """``fun`` (traced on one example, leading axis 1) applied to every example of ``arr``."""
        if not self.plan.batched:
            return fun(arr)
        out = jax.vmap(lambda a: fun(a[None]))(jnp.asarray(arr))
        return jax.tree_util.tree_map(lambda o: o.reshape((o.shape[0],) + o.shape[2:]), out)

    def apply(self, sl, arr):
        """Slice ``sl`` applied to a concrete array of the batch."""
        return np.asarray(self.examples(lambda a: sl(a, self.values), arr), np.float64)

    def expand(self, a, nd):
        """A per-input array ``(B,)`` as ``(B, 1, ..., 1)`` of rank ``nd``; scalars as they are."""
        a = np.asarray(a, np.float64)
        if a.ndim == 1 and self.per_input:
            return a.reshape((a.shape[0],) + (1,) * (nd - 1))
        return a

    def reduce(self, a, shape):
        """Mean over everything but the batch axis (per input), or over everything."""
        a = np.asarray(a, np.float64)
        nd = len(shape)
        a = a.reshape((1,) * (nd - a.ndim) + a.shape) if a.ndim < nd else a
        if not self.per_input or nd == 0:
            return float(np.mean(a))
        out = a.mean(axis=tuple(range(1, a.ndim))) if a.ndim > 1 else a
        return np.broadcast_to(out, (self.batch,)).copy()

    def relayout(self, a, old, new, where):
        a = np.asarray(a, np.float64)
        if tuple(old) == tuple(new) or a.size == 1:
            return a.reshape(()) if a.size == 1 else a
        b = a.reshape((1,) * (len(old) - a.ndim) + a.shape) if a.ndim < len(old) else a
        if self.per_input and b.shape[0] == self.batch and b.ndim > 1:
            flat = b.reshape(b.shape[0], -1)
            if np.all(flat == flat[:, :1]):  # per input, the same for every unit
                return flat[:, 0].reshape((b.shape[0],) + (1,) * (len(new) - 1))
        u = uniform(b)
        if u is not None:
            return np.asarray(u)
        raise UnsupportedModelError(
            f"{where}: per-unit coefficients (for instance a trained LayerNorm scale) reach a reshape or "
            "transpose that moves the units; mean-field initialisation cannot follow them there"
        )

    def gauss_var(self, gauss, nd):
        out = 0.0
        for b, c in gauss:
            out = out + np.asarray(c, np.float64) ** 2 * self.expand(self.q[b], nd)
        return np.asarray(out, np.float64)

    # -- Moments ------------------------------------------------------------------------------------------

    def gaussian(self, fn, params, kinks, name, sigma, mu, where, dtype):
        """``jaxsig.moments`` of ``fn`` at ``mu + sigma Z`` (cached by value within one propagation).

        Below ``s0 = sqrt(Q_MIN)`` (``2^-20``, the smallest scale jaxsig's rules
        resolve) the same expectations are taken of ``psi(y) = r fn(k y)`` at
        ``y = mu / k + (sigma / k) Z`` with ``k = min(sigma) / s0``: exact, since
        ``psi(y) = r fn(mu + sigma Z)``, and the rule then works at
        ``sigma / k >= s0``; ``r`` makes ``psi`` of order one near ``mu`` so that
        no square underflows. This lets a dying network's variance be predicted
        down to ``1e-60`` (in float32 too) rather than stop at ``2^-40``.
        """
        sigma, mu = np.broadcast_arrays(np.asarray(sigma, np.float64), np.asarray(mu, np.float64))
        sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, _S0)  # a zero-variance input: read at s0
        leaves = jax.tree_util.tree_leaves(params)
        key = (
            id(fn),
            tuple(np.asarray(p).tobytes() for p in leaves),
            sigma.tobytes(),
            mu.tobytes(),
            sigma.shape,
            jnp.dtype(dtype).name,
        )
        if key not in self.cache:
            k = float(np.min(sigma)) / _S0 if sigma.size else 1.0
            r = 1.0
            if k >= 1 or float(np.max(sigma)) / k > 40:  # no scaling needed, or the spread is too wide for one k
                k, sigma_s, mu_s, f, p, kk = 1.0, np.maximum(sigma, _S0), mu, fn, params, tuple(kinks)
            else:
                sigma_s, mu_s = sigma / k, mu / k
                kk = tuple(x / k for x in kinks if abs(x / k) < 1e3)  # farther kinks carry no Gaussian mass
                # The values are rescaled too, r fn(k y) of order 1, so that their squares do not underflow
                # (float32 stops at 1e-45: a dying network's q reaches that within a few dozen layers).
                i = int(np.argmin(sigma))
                pts = jnp.asarray([mu.reshape(-1)[i], mu.reshape(-1)[i] + sigma.reshape(-1)[i]], dtype)
                v = np.asarray(fn(pts, params), np.float64)
                size = max(abs(v[0]), abs(v[1] - v[0]))
                r = 1.0 / size if np.isfinite(size) and size > 0 else 1.0
                f, p = self.scaled(fn), (params, jnp.asarray(k, dtype), jnp.asarray(r, dtype))
            act = Activation(name, f, p, kk)
            try:
                m = moments(act, jnp.asarray(sigma_s, dtype), mu=jnp.asarray(mu_s, dtype), params=p)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{where}: the Gaussian moments of {name!r} failed: {e}") from e
            out = {n: np.asarray(getattr(m, n), np.float64) for n in ("m1", "m2", "g2", "dm2_dsigma")}
            # psi(y) = r fn(k y): m1 = m1_psi / r, m2 = m2_psi / r^2, fn' = psi' / (r k),
            # and d m2 / d sigma = (d m2_psi / d sigma_psi) / (r^2 k).
            out["m1"], out["m2"] = out["m1"] / r, out["m2"] / r**2
            out["g2"], out["dm2_dsigma"] = out["g2"] / (r * k), out["dm2_dsigma"] / (r * r * k)
            self.cache[key] = out
        return self.cache[key]

    def scaled(self, fn):
        """``y -> r fn(k y)`` with ``(fn params, k, r)`` as parameters (one stable function per ``fn``)."""
        key = ("scaled", id(fn))
        if key not in self.plan.composites:

            def f(y, p):
                return p[2] * fn(p[1] * y, p[0])

            f.__name__ = getattr(fn, "__name__", "f")
            self.plan.composites[key] = (f, fn)
        return self.plan.composites[key][0]

    def term_moments(self, t, nd, where):
        sigma = np.sqrt(self.gauss_var(t.gauss, nd))
        return self.gaussian(t.fn, t.params, t.kinks, t.name, sigma, t.shift, where, t.dtype)

    def entry_moments(self, cn, where):
        """Per-entry ``E[v]`` and ``E[v^2]`` of a canonical value (broadcastable arrays)."""
        nd = len(cn.shape)
        mean = np.asarray(cn.fixed, np.float64)
        sq = self.gauss_var(cn.gauss, nd) + mean**2
        for t in cn.terms:
            m = self.term_moments(t, nd, where)
            a, c = np.asarray(t.a, np.float64), np.asarray(t.c, np.float64)
            mu_t = a * m["m1"] + c
            sq = sq + a * a * m["m2"] + 2 * a * c * m["m1"] + c * c + 2 * mean * mu_t
            mean = mean + mu_t
        return mean, sq

    # -- Canonical forms ------------------------------------------------------------------------------------

    def canon(self, node, where) -> Canon:
        key = id(node)
        if key not in self.memo:
            self.memo[key] = (node, self._canon(node, where))
        return self.memo[key][1]

    def _canon(self, node, where) -> Canon:
        g = self.graph
        if isinstance(node, fx.Base):
            return Canon(((node.call, 1.0),), (), 0.0, g.calls[node.call].out_shape)
        if isinstance(node, fx.Fixed):
            if node.var is not None:
                return Canon((), (), self.fixed[node.var], node.shape)
            return Canon((), (), np.asarray(node.value, np.float64), ())
        if isinstance(node, fx.Add):
            left, right = self.canon(node.left, where), self.canon(node.right, where)
            s = node.sign
            terms = left.terms + tuple(t._replace(a=s * np.asarray(t.a), c=s * np.asarray(t.c)) for t in right.terms)
            parts = [_bases(t.gauss) for t in terms] + [_bases(left.gauss) | _bases(right.gauss)]
            seen = set()
            for p in parts:
                if p & seen:
                    raise UnsupportedModelError(
                        f"{where}: a sum adds two signals that depend on the same layer output through "
                        "different functions (e.g. phi(h) + LayerNorm(h)); mean-field theory here adds "
                        "independent signals only"
                    )
                seen |= p
            return Canon(
                _gauss_merge(left.gauss, right.gauss, s),
                terms,
                np.asarray(left.fixed) + s * np.asarray(right.fixed),
                node.shape,
            )
        if isinstance(node, fx.Norm):
            return self._norm(node, where)
        if isinstance(node, fx.Layout):
            cn = self.canon(node.child, where)
            return self._moved(cn, node.slice, node.shape, where)
        if isinstance(node, fx.Elementwise):
            return self._elementwise(node, where)
        raise TypeError(f"unknown expression {node!r}")  # pragma: no cover

    def _moved(self, cn, sl, shape, where, a=1.0, c=0.0) -> Canon:
        """``a * v + c`` after moving entries as ``sl`` does (identity / affine slices, layouts)."""
        old = cn.shape

        def rl(arr):
            return self.relayout(arr, old, shape, where)

        fixed = np.asarray(cn.fixed, np.float64)
        if fixed.ndim == len(sl.in_shape) and fixed.shape[1:] == tuple(sl.in_shape[1:]) and fixed.size > 1:
            fixed = self.apply(sl, fixed)  # exact, however sl moves entries
        else:
            fixed = a * rl(fixed) + c
        gauss = tuple((b, a * rl(co)) for b, co in cn.gauss)
        terms = tuple(
            t._replace(
                a=a * rl(t.a),
                c=a * rl(t.c),
                shift=rl(t.shift) if old != shape else t.shift,
                gauss=tuple((b, rl(co)) for b, co in t.gauss),
            )
            for t in cn.terms
        )
        return Canon(gauss, terms, fixed, shape)

    def _affine_coefficients(self, sl, where):
        """``(a, c)`` of an affine slice ``v = a w + c``: scalars, or per-unit vectors over the last axis."""
        key = (id(sl), tuple(np.asarray(p).tobytes() for p in sl.params(self.values)))
        if key not in self.plan.affine:
            zero = np.asarray(sl(jnp.zeros(sl.in_shape, sl.dtype), self.values), np.float64)
            one = np.asarray(sl(jnp.ones(sl.in_shape, sl.dtype), self.values), np.float64)
            out = []
            for arr in (one - zero, zero):
                u = uniform(arr)
                if u is not None:
                    out.append(np.asarray(u))
                    continue
                flat = arr.reshape(-1, arr.shape[-1])
                if not np.all(flat == flat[0]):
                    raise UnsupportedModelError(f"{where}: an affine map whose coefficients vary across the batch")
                out.append(flat[0])
            self.plan.affine[key] = tuple(out)
        return self.plan.affine[key]

    def _elementwise(self, node, where) -> Canon:
        sl, shape = node.slice, node.shape
        cn = self.canon(node.child, where)
        if sl.kind == "identity":
            return self._moved(cn, sl, shape, where)
        if sl.kind == "affine":
            a, c = self._affine_coefficients(sl, where)
            return self._moved(cn, sl, shape, where, a, c)
        fn, params, kinks = self.function(sl)
        if cn.gauss and not cn.terms:
            term = Term(fn, params, kinks, sl.name, cn.gauss, np.asarray(cn.fixed, np.float64), 1.0, 0.0, sl.dtype)
        elif len(cn.terms) == 1 and not cn.gauss:
            t = cn.terms[0]
            inner = []
            for label, arr in (("scale", t.a), ("offset", np.asarray(t.c) + np.asarray(cn.fixed))):
                u = uniform(arr)
                if u is None and self.per_input and np.ndim(arr) >= 1 and all(d == 1 for d in np.shape(arr)[1:]):
                    u = float(np.mean(arr))  # per-input coefficients: their batch mean (diagnose only)
                if u is None:
                    raise UnsupportedModelError(
                        f"{where}: {sl.name!r} is applied to {t.name!r} through a per-unit {label} (for "
                        "instance a trained LayerNorm); mean-field theory here needs one function for all units"
                    )
                inner.append(u)
            fn = self.composite(fn, t.fn)
            term = Term(
                fn,
                (params, t.params, inner[0], inner[1]),
                tuple(t.kinks),
                f"{sl.name}({t.name})",
                t.gauss,
                t.shift,
                1.0,
                0.0,
                jnp.promote_types(sl.dtype, t.dtype),
            )
        else:
            raise UnsupportedModelError(
                f"{where}: {sl.name!r} is applied to a sum of a non-Gaussian signal and another signal (as in "
                "relu(x + f(x)) with x itself an activation's output: a post-activation residual block); "
                "mean-field theory needs Gaussian pre-activations. Move the activation into the residual "
                "branch (pre-activation ordering)"
            )
        old = sl.in_shape
        if tuple(old) != tuple(shape):
            term = term._replace(
                shift=self.relayout(term.shift, old, shape, where),
                gauss=tuple((b, self.relayout(co, old, shape, where)) for b, co in term.gauss),
            )
        return Canon((), (term,), 0.0, shape)

    def function(self, sl):
        """``(fn(x, params), params, kinks)`` of a nonlinear slice.

        A slice that is one :class:`~jaxsig.flax.NNXActivation` call uses that
        module's jaxsig activation at its current parameters (any shape, exact
        kinks); any other uses the jaxpr (:attr:`flax_expr.Slice.packed`).
        """
        if sl.activation is not None:
            act = self.modules[sl.activation].activation
            values = self.modules[sl.activation].values
            if values is None:
                return _without_params(act.fn), (), tuple(act.kinks)
            return act.fn, values, tuple(act.kinks)
        return sl.packed, sl.params(self.values), sl.kinks

    def composite(self, outer, inner):
        """``x -> outer(a * inner(x) + c)`` with ``(outer params, inner params, a, c)`` as parameters.

        One function object per pair, kept in the plan, so that repeated
        propagations hit :func:`jaxsig.moments`' compile cache.
        """
        key = (id(outer), id(inner))
        if key not in self.plan.composites:

            def fn(x, p):
                return outer(p[2] * inner(x, p[1]) + p[3], p[0])

            fn.__name__ = f"{getattr(outer, '__name__', 'f')}({getattr(inner, '__name__', 'g')})"
            self.plan.composites[key] = (fn, outer, inner)
        return self.plan.composites[key][0]

    def _norm(self, node, where) -> Canon:
        call = self.graph.calls[node.call]
        module = self.modules[call.path]
        cn = self.canon(node.child, where)
        nd = len(cn.shape)
        mean, sq = self.entry_moments(cn, where)
        m = self.expand(self.reduce(mean, cn.shape), nd)
        ms = self.expand(self.reduce(sq, cn.shape), nd)
        var = np.maximum(ms - m * m, 0.0)

        def get(name):
            value = getattr(module, name, None)
            return None if value is None else np.asarray(value.get_value(), np.float64)

        # Per-unit affine parameters; uniform ones (as initialised) as scalars.
        scale, bias = get("scale"), get("bias")
        scale = 1.0 if scale is None else (uniform(scale) if uniform(scale) is not None else scale)
        bias = 0.0 if bias is None else (uniform(bias) if uniform(bias) is not None else bias)
        eps = float(module.epsilon)
        if isinstance(module, nnx.RMSNorm):
            a, c = scale / np.sqrt(ms + eps), 0.0
        elif isinstance(module, nnx.BatchNorm) and call.static.get("use_running_average"):
            a = scale / np.sqrt(get("var") + eps)
            c = bias - a * get("mean")
        else:
            # LayerNorm; BatchNorm in training mode, whose per-unit batch statistics concentrate,
            # for exchangeable units at initialisation, on the same mean and variance.
            a = scale / np.sqrt(var + eps)
            c = bias - a * m
        gauss = tuple((b, a * co) for b, co in cn.gauss)
        terms = tuple(t._replace(a=a * np.asarray(t.a), c=a * np.asarray(t.c)) for t in cn.terms)
        return Canon(gauss, terms, a * np.asarray(cn.fixed) + c, node.shape)

    # -- Per-layer statistics ----------------------------------------------------------------------------------

    def layer_input(self, layer: Layer):
        """Statistics of a layer's input: second moment, gain, link function, a label."""
        where = f"{self.graph.calls[layer.call].cls} {layer.path!r}"
        cn = self.canon(self.graph.input_expr(layer.call), where)
        nd = len(cn.shape)
        _, sq = self.entry_moments(cn, where)
        q_in = self.reduce(sq, cn.shape)
        sources = [_bases(t.gauss) for t in cn.terms] + ([_bases(cn.gauss)] if cn.gauss else [])
        out = {
            "q_in": q_in,
            "g2sq": np.nan,
            "link": None,
            "base": None,
            "label": "data",
            "activation": False,
            "residual": len(sources) > 1 or any(len(s) > 1 for s in sources),
        }
        if not cn.gauss and not cn.terms:
            return out
        if len(cn.terms) == 1 and not cn.gauss:
            t = cn.terms[0]
            out["label"], out["activation"] = t.name, True
            m = self.term_moments(t, nd, where)
            if len(t.gauss) == 1:
                b, cb = t.gauss[0]
                out["g2sq"] = self.reduce(np.asarray(t.a) ** 2 * np.asarray(cb) ** 2 * m["g2"] ** 2, cn.shape)
                scal = [uniform(v) for v in (cb, t.shift, t.a, np.asarray(t.c) + np.asarray(cn.fixed))]
                if all(s is not None for s in scal):
                    out["link"] = (t.fn, t.params, t.kinks, t.name, t.dtype, *scal)
                    out["base"] = b
        elif cn.gauss and not cn.terms:
            out["label"] = "linear" if len(cn.gauss) == 1 else "residual stream"
            if len(cn.gauss) == 1:
                b, cb = cn.gauss[0]
                out["g2sq"] = self.reduce(np.broadcast_to(np.asarray(cb, np.float64) ** 2, np.shape(sq)), cn.shape)
                scal = [uniform(cb), uniform(cn.fixed)]
                if all(s is not None for s in scal):
                    out["link"] = (
                        identity,
                        None,
                        (),
                        "identity",
                        self.graph.calls[b].dtype,
                        scal[0],
                        0.0,
                        1.0,
                        scal[1],
                    )
                    out["base"] = b
        else:
            out["label"] = f"sum of {len(sources)} signals"
        return out

    def square(self, fn):
        """``x -> fn(x)^2`` (one stable function per ``fn``, kept in the plan)."""
        key = ("square", id(fn))
        if key not in self.plan.composites:

            def sq(x, p):
                return fn(x, p) ** 2

            sq.__name__ = getattr(fn, "__name__", "f") + "^2"
            self.plan.composites[key] = (sq, fn)
        return self.plan.composites[key][0]

    def link(self, link):
        """``(Activation, params)`` of the link ``L(x) = a fn(cb x + shift) + c`` of a layer."""
        fn, params, kinks, name, dtype, cb, shift, a, c = link
        key = ("link", id(fn))
        if key not in self.plan.composites:

            def lfn(x, p):
                return p[3] * fn(p[1] * x + p[2], p[0]) + p[4]

            def lsq(x, p):
                return lfn(x, p) ** 2

            lfn.__name__ = lsq.__name__ = name
            self.plan.composites[key] = (lfn, lsq, fn)
        lfn, lsq, _ = self.plan.composites[key]
        lparams = (params, cb, shift, a, c)
        lkinks = tuple((k - shift) / cb for k in kinks) if cb != 0 else ()
        return (Activation(name, lfn, lparams, lkinks), Activation(name + "^2", lsq, lparams, lkinks), lparams, dtype)
