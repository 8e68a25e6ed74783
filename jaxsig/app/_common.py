"""What the ``jaxsig`` subcommands share: errors, argument types and options,
activation resolution, the padded signature computation, and table rendering."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np

import jaxsig
from jaxsig.core import activations as _activations
from jaxsig.core._compile import CPU_OPTIONS, CPU_XLA_FLAGS
from jaxsig.core._format import format_number, render_table
from jaxsig.theory import taxonomy

DEFAULT_ACTIVATIONS = _activations.PAPER + ("elu", "selu", "softplus", "gelu_tanh", "erf", "x^2")
"""What ``jaxsig report`` and ``jaxsig table`` compare by default: the eight
activations of the paper, four more standard ones, ``erf`` (closed-form ``m2``)
and ``x^2`` (superlinear, class A>1)."""

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130

NUMERIC_DIGITS = 6


class CLIError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with errors raised as one-line :class:`CLIError` instead of usage dumps."""

    def error(self, message):
        raise CLIError(f"{message} (see '{self.prog} --help')")


# --- Shared options ------------------------------------------------------------------


def add_activation_options(p: argparse.ArgumentParser, default: Sequence[str] = DEFAULT_ACTIVATIONS):
    p.add_argument(
        "-a",
        "--activations",
        action="append",
        metavar="NAME[,NAME...]",
        help="activations: registered names or package.module:function, comma-separated, "
        "option repeatable (default: " + ",".join(default) + ")",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set parameter NAME of every chosen activation that has it (repeatable), e.g. --param negative_slope=0.1",
    )
    p.set_defaults(default_activations=tuple(default))


def add_compute_options(p: argparse.ArgumentParser):
    p.add_argument(
        "--x64",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compute in float64 (default: on; --no-x64 computes in float32, accurate to ~1e-6)",
    )
    p.add_argument(
        "--cache-dir",
        default=default_cache_dir(),
        metavar="DIR",
        help="persistent cache of compiled XLA programs, which makes repeated runs faster; "
        "'none' disables it (default: $JAXSIG_CACHE_DIR or ~/.cache/jaxsig/xla)",
    )


def default_cache_dir() -> str:
    env = os.environ.get("JAXSIG_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxsig", "xla")


@contextlib.contextmanager
def compilation_cache(cache_dir: str | None):
    """Point JAX's persistent compilation cache at ``cache_dir`` for the duration
    of the command (unless the user set one), restoring the previous settings on
    exit so that ``main()`` called from Python leaves the caller's config as it was."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    if not cache_dir or cache_dir.lower() == "none" or jax.config.jax_compilation_cache_dir:
        yield
        return
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError:
        yield  # a cache is an optimisation: run without it
        return
    saved = {name: getattr(jax.config, name) for name in names}
    jax.config.update(names[0], cache_dir)
    # Every program, however small: a report's per-activation probes (classify's
    # phi, phi', phi'' at 46 ms each, the elementwise check's one-op programs)
    # compile faster than 0.2 s but load faster still. A warm `jaxsig report`
    # took 11.7-14.5 s against 15.0-17.2 s with a 0.2 s floor (three runs each,
    # interleaved); the cache grew from 2.8 to 3.2 MB (16 -> 99 entries).
    jax.config.update(names[1], 0.0)
    try:
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


@contextlib.contextmanager
def fast_compile():
    """Ask XLA:CPU for the library's compiler options (:data:`jaxsig.core._compile.CPU_XLA_FLAGS`:
    the loop emitters, half the compile time, same numbers) for the duration of the command.

    XLA reads ``XLA_FLAGS`` once, when the process first uses JAX: this speeds up
    the command run as ``jaxsig`` or ``python -m jaxsig`` and does nothing where
    JAX is already running (``main()`` called from a session). A user's own
    setting of these options wins. ``XLA_FLAGS`` is restored on exit.
    """
    saved = os.environ.get("XLA_FLAGS")
    if saved is not None and any(name in saved for name in CPU_OPTIONS):
        yield
        return
    os.environ["XLA_FLAGS"] = f"{saved} {CPU_XLA_FLAGS}" if saved else CPU_XLA_FLAGS
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("XLA_FLAGS", None)
        else:
            os.environ["XLA_FLAGS"] = saved


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def finite_float(text: str) -> float:
    v = number(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def positive_float(text: str) -> float:
    v = finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def nonneg_float(text: str) -> float:
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def list_of(item: Callable[[str], float]) -> Callable[[str], list[float]]:
    def parse(text: str) -> list[float]:
        parts = [t.strip() for t in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
        return [item(t) for t in parts]

    return parse


positive_floats = list_of(positive_float)
finite_floats = list_of(finite_float)

SPEC_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def activations_from_args(args) -> list[jaxsig.Activation]:
    """The activations chosen by ``--activations`` and ``--param``, resolved and checked."""
    specs = []
    for chunk in args.activations or [",".join(args.default_activations)]:
        specs += [s.strip() for s in chunk.split(",") if s.strip()]
    if not specs:
        raise CLIError("--activations is empty; give at least one name")
    params = parse_params(args.param)
    acts, used = [], set()
    for spec in specs:
        act, user_callable = resolve(spec)
        act, taken = with_params(act, params, user_callable)
        used |= taken
        acts.append(act)
    unused = sorted(set(params) - used)
    if unused:
        raise CLIError(
            f"no chosen activation takes parameter(s) {', '.join(map(repr, unused))}; parameters: {param_summary(acts)}"
        )
    names = [a.name for a in acts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CLIError(f"activation(s) chosen twice: {', '.join(dup)}")
    return acts


def parse_params(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise CLIError(f"--param expects NAME=VALUE, got {item!r}")
        try:
            out[name] = finite_float(value.strip())
        except argparse.ArgumentTypeError as e:
            raise CLIError(f"--param {name}: {e}") from None
    return out


def resolve(spec: str) -> tuple[jaxsig.Activation, bool]:
    """The activation named by ``spec``, and whether it is a plain user callable."""
    if ":" not in spec:
        try:
            return _activations.get(spec), False
        except KeyError as e:
            raise CLIError(e.args[0]) from None
    if not SPEC_RE.match(spec):
        raise CLIError(f"expected an activation name or package.module:function, got {spec!r}")
    module_name, attr = spec.split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:
        raise CLIError(f"cannot import module {module_name!r} for {spec!r}: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module {module_name!r} has no attribute {attr!r} (from {spec!r})")
        obj = getattr(obj, part)
    if isinstance(obj, jaxsig.Activation):
        return obj, False
    if not callable(obj):
        raise CLIError(f"{spec!r} is a {type(obj).__name__}, not a callable phi(x) or a jaxsig.Activation")
    return jaxsig.Activation(attr.split(".")[-1], obj, None, (), spec), True


def takes_params(fn) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)


def with_params(act: jaxsig.Activation, params: dict[str, float], user_callable: bool):
    """``act`` with the ``--param`` values it takes, and the names it took."""
    if isinstance(act.params, dict):
        taken = {k: v for k, v in params.items() if k in act.params}
        return (dataclasses.replace(act, params={**act.params, **taken}) if taken else act), set(taken)
    if user_callable and params and takes_params(act.fn):
        return dataclasses.replace(act, params=dict(params)), set(params)
    return act, set()


def param_summary(acts) -> str:
    parts = [f"{a.name}: {', '.join(a.params)}" for a in acts if isinstance(a.params, dict)]
    return "; ".join(parts) if parts else "none of the chosen activations has parameters"


# --- Computation ------------------------------------------------------------------------


def compute_signature(act: jaxsig.Activation, sigma, mu):
    """``(Signature, Auxiliary)`` of ``act`` at 1-D ``(sigma, mu)``, as NumPy arrays.

    The inputs are padded (repeating the last entry) to a power of two, at least
    16, so that tables and reports of different sizes share compiled programs
    (in this process and in the persistent cache): compiling costs seconds, the
    padded entries microseconds. Input errors become :class:`CLIError`.
    """
    sigma, mu = np.broadcast_arrays(np.ravel(np.asarray(sigma, float)), np.ravel(np.asarray(mu, float)))
    n = sigma.size
    size = max(16, 1 << (n - 1).bit_length())

    def pad(v):
        return np.concatenate([v, np.full(size - n, v[-1])])

    try:
        out = jaxsig.signature_with_aux(act, pad(sigma), mu=pad(mu))
    except (ValueError, TypeError, ArithmeticError) as e:
        raise CLIError(f"activation {act.name!r}: {e}") from None
    return as_numpy(out, lambda v: v[:n])


def as_numpy(tree, then=lambda v: v):
    """``then(leaf)`` for every array leaf of ``tree``, as NumPy arrays."""
    return jax.tree_util.tree_map(lambda v: then(np.asarray(v)), tree)


def stack_rows(rows):
    """Stack a list of NamedTuples of arrays along a new leading axis."""
    return jax.tree_util.tree_map(lambda *fields: np.stack(fields), *rows)


# --- Formatting ------------------------------------------------------------------------------


def fmt(v, digits: int = NUMERIC_DIGITS) -> str:
    """A number for tables: 6 significant digits, inf/-inf, NaN as 'undefined', tiny as 0."""
    return format_number(v, digits)


render = render_table  # the one table renderer, shared with the integrations


def signature_rows(names, sigs: jaxsig.Signature):
    """Rows ``name, m1 .. c`` of a stacked ``(n,)`` signature, formatted."""
    return [[name] + [fmt(getattr(sigs, f)[i]) for f in jaxsig.FIELDS] for i, name in enumerate(names)]


def classification_rows(classes: Sequence[taxonomy.Classification]):
    header = ["activation", "class", "bounded", "saturates -/+", "kinks", "smooth", "parity", "monotone", "infinite"]

    def yes(b):
        return "yes" if b else "no"

    rows = [
        [
            c.name,
            c.growth,
            yes(c.bounded),
            f"{yes(c.saturating_minus)}/{yes(c.saturating_plus)}",
            ",".join(fmt(k) for k in c.kinks) or "-",
            yes(c.smooth),
            c.parity,
            yes(c.monotone),
            ",".join(c.infinite + tuple(f"{u}(undefined)" for u in c.undefined)) or "-",
        ]
        for c in classes
    ]
    return header, rows


def report_card_rows(names, card: taxonomy.ReportCard):
    header = (
        ["activation"]
        + [
            f"{info.number} {info.symbol} {info.relation} {fmt(float(np.ravel(getattr(card, k).threshold)[0]), 4)}"
            for k, info in taxonomy.PRINCIPLES.items()
        ]
        + ["sW^2", "passed"]
    )
    rows = []
    for i, name in enumerate(names):
        lines = taxonomy.explain(card, i)
        cells = [f"{fmt(ln.value, 4)} {'pass' if ln.passed else 'FAIL'}" for ln in lines]
        n_pass = sum(ln.passed for ln in lines)
        rows.append([name] + cells + [fmt(card.weight_variance[i], 4), f"{n_pass}/{len(lines)}"])
    return header, rows


def range_of(item: Callable[[str], float]) -> Callable[[str], tuple[float, float]]:
    """Parse ``MIN,MAX`` with ``MIN < MAX``."""
    pair = list_of(item)

    def parse(text: str) -> tuple[float, float]:
        values = pair(text)
        if len(values) != 2 or not values[0] < values[1]:
            raise argparse.ArgumentTypeError(f"expected MIN,MAX with MIN < MAX, got {text!r}")
        return values[0], values[1]

    return parse


def prepare_out(path: Path) -> Path:
    """Create the output folder and prove it writable, before any long computation."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".jaxsig-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CLIError(f"cannot write to output folder '{path}': {e.strerror or e}") from None
    return path


@contextlib.contextmanager
def staged_output(path: Path) -> Iterator[Path]:
    """A staging folder beside ``path`` that becomes ``path`` only if the block
    finishes: on an error or an interrupt (Ctrl-C) it is deleted, and ``path`` is
    left as it was, so a run never leaves half-written results.

    A new ``path`` is the staging folder renamed (atomic on one file system); in
    an existing ``path`` each file is replaced one by one (``os.replace``),
    other files in it are kept.
    """
    parent = path.parent if str(path.parent) else Path(".")
    if path.exists() and not path.is_dir():
        raise CLIError(f"output folder '{path}' exists and is not a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=parent))
    except OSError as e:
        raise CLIError(f"cannot write to output folder '{path}': {e.strerror or e}") from None
    try:
        yield stage
        if path.exists():
            for f in stage.iterdir():
                os.replace(f, path / f.name)
            stage.rmdir()
        else:
            os.replace(stage, path)
    except OSError as e:
        raise CLIError(f"cannot write to output folder '{path}': {e.strerror or e}") from None
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
