"""The algebra mean-field theory evaluates: what feeds a dense / conv layer, as an expression.

:class:`~jaxsig.integrations.flax_graph.ModelGraph` writes the input of every
dense or convolutional layer in these terms:

* :class:`Base` ``(i)``: the output of layer ``i``. In a wide random network
  each unit is a centred Gaussian, uncorrelated with the output of every other
  layer (its weights are fresh and have mean zero).
* :class:`Elementwise` ``(f, e)``: ``f`` applied entrywise to ``e`` (an
  activation, or an affine map such as a residual scale); ``f`` is a
  :class:`Slice` of the traced model.
* :class:`Add` ``(e1, e2, sign)``: a residual sum ``e1 + sign * e2``.
* :class:`Norm` ``(i, e)``: normalisation layer ``i`` applied to ``e``.
* :class:`Layout` ``(e)``: a transpose or similar (entries are only moved).
* :class:`Fixed` ``(v)``: a value that depends on no layer output (the data,
  constants); evaluated exactly.

The numbers (variances, moments) are computed by
:mod:`jaxsig.integrations.flax_propagation`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

__all__ = ["Slice", "Base", "Fixed", "Elementwise", "Add", "Norm", "Layout", "Expr"]


@dataclasses.dataclass(eq=False)
class Slice:
    """An elementwise piece of the model between two values, ``v = f(w)``, as a function.

    Attributes:
      kind: ``"identity"`` (type casts, reshapes), ``"affine"`` (``a w + c``) or
        ``"nonlinear"``.
      name: a readable name: the :class:`~jaxsig.flax.NNXActivation`'s, the
        custom-derivative function's (``relu``), or the special functions used
        (``tanh``).
      kinks: points where ``f'`` may jump (comparisons and ``max``/``min``
        against constants, an ``NNXActivation``'s kinks); quadrature panel edges.
      leaves: indices of the state leaves (parameters) ``f`` reads, in the order
        of :meth:`params`.
      in_shape, out_shape, dtype: as traced.
      fun: ``fun(w, *leaf_values) -> [v]`` at the traced shapes.
      signature: the slice's jaxpr as text with its constants: slices with
        equal signatures compute the same function (of their own parameters).
      shared: a cache, shared by the slices of one graph, of ``packed``
        functions by signature.
      activation: the path of the :class:`~jaxsig.flax.NNXActivation` when the
        slice is exactly one call of it (up to casts and reshapes): its own
        jaxsig activation can then be used, at any shape.
    """

    kind: str
    name: str
    kinks: tuple
    leaves: tuple
    in_shape: tuple
    out_shape: tuple
    dtype: Any
    fun: Callable
    signature: Any = None
    shared: dict = dataclasses.field(default_factory=dict)
    activation: Optional[str] = None

    @property
    def packed(self) -> Callable:
        """``f(x, params)`` for ``x`` of any shape: entries are packed into arrays of the traced shape.

        ``f`` is elementwise with position-independent coefficients (checked by
        :class:`ModelGraph`), so entry ``k`` of the output is ``f(x[k])`` however
        the entries are laid out. One function object per signature (twenty
        ``tanh`` layers share one), so that :func:`jaxsig.moments` compiles once
        for all of them.
        """
        key = self.signature if self.signature is not None else id(self)
        if key not in self.shared:
            self.shared[key] = self._pack()
        return self.shared[key]

    def _pack(self) -> Callable:
        size = math.prod(self.in_shape)
        in_shape, fun, dtype = self.in_shape, self.fun, self.dtype
        # One compiled program per number of chunks: eager evaluation would dispatch (and compile)
        # every operation of the slice separately.
        chunked = jax.jit(lambda chunks, params: jax.vmap(lambda c: fun(c, *params)[0])(chunks))

        def f(x, params):
            x = jnp.asarray(x)
            flat = x.reshape(-1).astype(dtype)
            n = flat.shape[0]
            k = max(1, -(-n // size))
            chunks = jnp.pad(flat, (0, k * size - n)).reshape((k,) + in_shape)
            return chunked(chunks, tuple(params)).reshape(-1)[:n].reshape(x.shape)

        f.__name__ = self.name
        return f

    def params(self, values) -> tuple:
        """The current values of the parameters ``f`` reads, from the model's state leaves."""
        return tuple(values[i] for i in self.leaves)

    def __call__(self, w, values):
        """``f(w)`` at the traced shape, with the state leaves ``values``."""
        return self.fun(jnp.asarray(w, self.dtype), *self.params(values))[0]


class Base(NamedTuple):
    """The output of dense / convolutional call ``call``: a centred Gaussian per unit."""

    call: int


class Fixed(NamedTuple):
    """A value that depends on no layer output (data, constants): evaluated exactly.

    ``var`` is the jaxpr variable to evaluate, or ``None`` for a literal, whose
    value is ``value``.
    """

    var: Any
    shape: tuple
    value: Any = None


class Elementwise(NamedTuple):
    """``slice`` applied entrywise to ``child``."""

    slice: Slice
    child: Any
    shape: tuple


class Add(NamedTuple):
    """``left + sign * right``, a residual sum."""

    left: Any
    right: Any
    sign: float
    shape: tuple


class Norm(NamedTuple):
    """Normalisation call ``call`` applied to ``child``."""

    call: int
    child: Any
    shape: tuple


class Layout(NamedTuple):
    """Entries of ``child`` moved (transpose, reversal); ``slice`` moves a concrete array the same way."""

    slice: Slice
    child: Any
    shape: tuple


Expr = Union[Base, Fixed, Elementwise, Add, Norm, Layout]
