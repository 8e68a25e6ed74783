"""The ``jaxsig`` command: signature tables and the full activation report.

Usage (also ``python -m jaxsig``)::

    jaxsig report                       # the standard activations, a folder of results
    jaxsig report -a relu,gelu,mypkg.acts:my_act --param beta=1.5 --out my-report
    jaxsig table --sigma 0.5,1,2 --format markdown
    jaxsig design --family rational --target "g2<=0.8" --target "tv<5" --out result.json
    jaxsig phase -a tanh,relu --sigma-b2 0,0.3 --out phase-{name}.png
    jaxsig --version

Activations are registered names (``jaxsig.activations.names()``) or a user
object given as ``package.module:attribute``: imported (the current folder is
searched first), never evaluated as text. The object may be a
:class:`jaxsig.Activation` (declare its kinks there) or a callable ``phi(x)``
or ``phi(x, params)``. ``--param NAME=VALUE`` sets parameter ``NAME`` of every
chosen activation that has it: registered activations take the keys of their
default parameters, user callables with a second argument take every
``--param`` as a dict.

Exit status: 0 on success, 2 on a usage or input error (one line on stderr,
``jaxsig: error: ...``), 130 when interrupted; ``jaxsig design`` exits with 1
when no point it found meets every target (the closest one is still reported).

This module is an application: it may switch JAX to float64 (``--x64``, on by
default) and point JAX's persistent compilation cache at a folder, both only for
the duration of the command; library modules never touch global configuration.

Adding a subcommand: write ``_cmd_<name>(args) -> int``, register it in
:func:`_build_parser` with ``sub.add_parser`` (reuse :func:`_add_activation_options`
and :func:`_add_compute_options`), resolve activations with
:func:`_activations_from_args`, and raise :class:`CLIError` for bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import importlib
import inspect
import io
import json
import math
import os
import re
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import jax
import numpy as np

import jaxsig
from jaxsig.core import activations as _activations
from jaxsig.theory import taxonomy

__all__ = ["main", "CLIError", "DEFAULT_ACTIVATIONS"]

DEFAULT_ACTIVATIONS = _activations.PAPER + ("elu", "selu", "softplus", "gelu_tanh", "erf", "x^2")
"""What ``jaxsig report`` and ``jaxsig table`` compare by default: the eight
activations of the paper, four more standard ones, ``erf`` (closed-form ``m2``)
and ``x^2`` (superlinear, class A>1)."""

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130

_NUMERIC_DIGITS = 6


class CLIError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors raised as one-line :class:`CLIError` instead of usage dumps."""

    def error(self, message):
        raise CLIError(f"{message} (see '{self.prog} --help')")


# --- Entry point -------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``jaxsig`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns:
      The exit status: 0 success, 2 usage or input error, 130 interrupted.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except CLIError as e:
        return _fail(e)
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with (
            warnings.catch_warnings(),
            jax.enable_x64(getattr(args, "x64", True)),
            _compilation_cache(getattr(args, "cache_dir", None)),
        ):
            warnings.showwarning = _show_warning
            return args.func(args)
    except CLIError as e:
        return _fail(e)
    except KeyboardInterrupt:
        print("jaxsig: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (jaxsig table | head): stop quietly, as cat does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _fail(err: Exception) -> int:
    message = " ".join(str(err).split())
    print(f"jaxsig: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"jaxsig: warning: {' '.join(str(message).split())}", file=sys.stderr)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxsig",
        description=(
            "The integral signature (m1, g1, g2, m2, eta, alpha_plus, alpha_minus, tv, c) "
            "of activation functions (arXiv:2510.08456), with growth classes and a "
            "design-principle report card."
        ),
        epilog="Run 'jaxsig report' for the full comparison of the standard activations.",
    )
    parser.add_argument("--version", action="version", version=f"jaxsig {jaxsig.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "report",
        help="full comparison: tables, classes, report cards, JSON/CSV data and figures",
        description=(
            "Compute the signature of each activation over a grid of input scales sigma, "
            "classify it, judge it against the five design principles at --sigma, print the "
            "tables, and write report.md, signature.json, signature.csv and PNG figures to --out."
        ),
    )
    _add_activation_options(p)
    p.add_argument("--sigma", type=_positive_float, default=1.0, metavar="S",
                   help="input scale of the printed table and report cards (default: 1)")
    p.add_argument("--mu", type=_finite_float, default=0.0, metavar="M",
                   help="input mean, pre-activations are mu + sigma Z (default: 0)")
    p.add_argument("--sigma-min", type=_positive_float, default=0.05, metavar="S",
                   help="smallest sigma of the grid (default: 0.05)")
    p.add_argument("--sigma-max", type=_positive_float, default=20.0, metavar="S",
                   help="largest sigma of the grid (default: 20)")
    p.add_argument("--sigma-num", type=_positive_int, default=64, metavar="N",
                   help="number of log-spaced grid points (default: 64)")
    p.add_argument("--out", type=Path, default=Path("jaxsig-report"), metavar="DIR",
                   help="output folder, created if needed; files in it are overwritten "
                        "(default: ./jaxsig-report)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    g = p.add_argument_group("report-card thresholds (defaults from SPEC; bias drift: jaxsig's)")
    g.add_argument("--g2-max", type=_finite_float, default=0.8, metavar="X", help="contraction: g2 <= X (default 0.8)")
    g.add_argument("--variance-slope-max", type=_finite_float, default=1.0,
                   metavar="X", help="variance management: V'(q*) <= X (default 1)")
    g.add_argument("--bias-variance", type=_nonneg_float, default=0.0,
                   metavar="X", help="sb^2 in the variance map q -> sW^2 m2(sqrt q) + sb^2 (default 0)")
    g.add_argument("--m1-max", type=_nonneg_float, default=0.3, metavar="X", help="bias drift: |m1| <= X (default 0.3)")
    g.add_argument("--b-max", type=_nonneg_float, default=1.5, metavar="X", help="bias drift: |b| <= X (default 1.5)")
    g.add_argument("--tv-max", type=_positive_float, default=5.0, metavar="X", help="kernel conditioning: tv < X (default 5)")
    _add_compute_options(p)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "table",
        help="the signature table only",
        description="Print the nine signature components of each activation at each (sigma, mu).",
    )
    _add_activation_options(p)
    p.add_argument("--sigma", type=_positive_floats, default=[1.0], metavar="S[,S...]",
                   help="input scale(s), comma-separated (default: 1)")
    p.add_argument("--mu", type=_finite_floats, default=[0.0], metavar="M[,M...]",
                   help="input mean(s), comma-separated (default: 0)")
    p.add_argument("--format", choices=("text", "json", "csv", "markdown"), default="text",
                   help="output format (default: text). json: inf as \"inf\"/\"-inf\", "
                        "undefined as null; csv: inf, -inf, nan")
    _add_compute_options(p)
    p.set_defaults(func=_cmd_table)

    from jaxsig.designing import families as _families
    from jaxsig.designing import targets as _targets

    p = sub.add_parser(
        "design",
        help="design an activation: search a parametrised family for target signature values",
        description=(
            "Search a parametrised activation family by gradient descent (augmented\n"
            "Lagrangian, adam, restarts in parallel) for parameters whose signature meets\n"
            "every --target; print the result and optionally save it as JSON (load it with\n"
            "jaxsig.DesignResult.load). Families: " + ", ".join(_families.names()) + "."
        ),
        epilog="Target grammar:\n" + _targets.GRAMMAR,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--family", default="rational", metavar="NAME",
                   help="family to search: " + ", ".join(_families.names()) + " (default: rational)")
    p.add_argument("--target", action="append", required=True, metavar="TARGET",
                   help='a target such as "g2<=0.8", "tv<5", "m2==1", "c<inf", "minimize eta" '
                        "(repeatable; grammar below)")
    p.add_argument("--sigma", type=_positive_float, default=1.0, metavar="S",
                   help="input scale of targets given without @sigma (default: 1)")
    p.add_argument("--steps", type=_positive_int, default=500, metavar="N",
                   help="optimizer steps per restart (default: 500)")
    p.add_argument("--rounds", type=_positive_int, default=10, metavar="N",
                   help="augmented-Lagrangian rounds the steps are split into (default: 10)")
    p.add_argument("--restarts", type=_positive_int, default=8, metavar="N",
                   help="starting points searched together; the first is the family's default (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random restarts (default: 0)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write the result as JSON to FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    _add_compute_options(p)
    p.set_defaults(func=_cmd_design)

    p = sub.add_parser(
        "phase",
        help="mean-field phase diagram: chi1 over (sW^2, sb^2) and the edge of chaos",
        description=(
            "For each activation, print the edge of chaos (chi1 = sW^2 g2(sqrt q*)^2 = 1): the "
            "critical weight variance sW^2 and fixed point q* for bias variances sb^2 across "
            "--sigma-b2, and draw the phase diagram (log chi1 over the (sW^2, sb^2) plane) as a PNG."
        ),
    )
    _add_activation_options(p, default=("tanh",))
    p.add_argument("--sigma-w2", type=_range_of(_nonneg_float), default=(0.05, 4.0), metavar="MIN,MAX",
                   help="weight-variance axis of the figure (default: 0.05,4)")
    p.add_argument("--sigma-b2", type=_range_of(_nonneg_float), default=(0.0, 0.5), metavar="MIN,MAX",
                   help="bias-variance range of the table and the figure (default: 0,0.5)")
    p.add_argument("--rows", type=_positive_int, default=6, metavar="N",
                   help="sb^2 values printed, evenly spaced over --sigma-b2 (default: 6)")
    p.add_argument("--resolution", type=_positive_int, default=48, metavar="N",
                   help="grid points per axis of the figure (default: 48)")
    p.add_argument("--out", default="phase-{name}.png", metavar="FILE",
                   help="PNG path; '{name}' is replaced by the activation name, required with "
                        "several activations (default: phase-{name}.png)")
    p.add_argument("--no-figure", action="store_true", help="print the table only")
    p.add_argument("--format", choices=("text", "json", "markdown"), default="text",
                   help="output format of the table (default: text)")
    _add_compute_options(p)
    p.set_defaults(func=_cmd_phase)
    return parser


# --- Shared options ------------------------------------------------------------------


def _add_activation_options(p: argparse.ArgumentParser, default: Sequence[str] = DEFAULT_ACTIVATIONS):
    p.add_argument(
        "-a", "--activations", action="append", metavar="NAME[,NAME...]",
        help="activations: registered names or package.module:function, comma-separated, "
             "option repeatable (default: " + ",".join(default) + ")",
    )
    p.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="set parameter NAME of every chosen activation that has it (repeatable), "
             "e.g. --param negative_slope=0.1",
    )
    p.set_defaults(default_activations=tuple(default))


def _add_compute_options(p: argparse.ArgumentParser):
    p.add_argument(
        "--x64", action=argparse.BooleanOptionalAction, default=True,
        help="compute in float64 (default: on; --no-x64 computes in float32, accurate to ~1e-6)",
    )
    p.add_argument(
        "--cache-dir", default=_default_cache_dir(), metavar="DIR",
        help="persistent cache of compiled XLA programs, which makes repeated runs faster; "
             "'none' disables it (default: $JAXSIG_CACHE_DIR or ~/.cache/jaxsig/xla)",
    )


def _default_cache_dir() -> str:
    env = os.environ.get("JAXSIG_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxsig", "xla")


@contextlib.contextmanager
def _compilation_cache(cache_dir: str | None):
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
    jax.config.update(names[1], 0.2)
    try:
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _finite_float(text: str) -> float:
    v = _number(text)
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    v = _finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _nonneg_float(text: str) -> float:
    v = _finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _list_of(item: Callable[[str], float]) -> Callable[[str], list[float]]:
    def parse(text: str) -> list[float]:
        parts = [t.strip() for t in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
        return [item(t) for t in parts]

    return parse


_positive_floats = _list_of(_positive_float)
_finite_floats = _list_of(_finite_float)

_SPEC_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def _activations_from_args(args) -> list[jaxsig.Activation]:
    """The activations chosen by ``--activations`` and ``--param``, resolved and checked."""
    specs = []
    for chunk in args.activations or [",".join(args.default_activations)]:
        specs += [s.strip() for s in chunk.split(",") if s.strip()]
    if not specs:
        raise CLIError("--activations is empty; give at least one name")
    params = _parse_params(args.param)
    acts, used = [], set()
    for spec in specs:
        act, user_callable = _resolve(spec)
        act, taken = _with_params(act, params, user_callable)
        used |= taken
        acts.append(act)
    unused = sorted(set(params) - used)
    if unused:
        raise CLIError(
            f"no chosen activation takes parameter(s) {', '.join(map(repr, unused))}; "
            f"parameters: {_param_summary(acts)}"
        )
    names = [a.name for a in acts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CLIError(f"activation(s) chosen twice: {', '.join(dup)}")
    return acts


def _parse_params(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise CLIError(f"--param expects NAME=VALUE, got {item!r}")
        try:
            out[name] = _finite_float(value.strip())
        except argparse.ArgumentTypeError as e:
            raise CLIError(f"--param {name}: {e}") from None
    return out


def _resolve(spec: str) -> tuple[jaxsig.Activation, bool]:
    """The activation named by ``spec``, and whether it is a plain user callable."""
    if ":" not in spec:
        try:
            return _activations.get(spec), False
        except KeyError as e:
            raise CLIError(e.args[0]) from None
    if not _SPEC_RE.match(spec):
        raise CLIError(f"expected an activation name or package.module:function, got {spec!r}")
    module_name, attr = spec.split(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any failure while importing user code
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


def _takes_params(fn) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in positional)


def _with_params(act: jaxsig.Activation, params: dict[str, float], user_callable: bool):
    """``act`` with the ``--param`` values it takes, and the names it took."""
    if isinstance(act.params, dict):
        taken = {k: v for k, v in params.items() if k in act.params}
        return (dataclasses.replace(act, params={**act.params, **taken}) if taken else act), set(taken)
    if user_callable and params and _takes_params(act.fn):
        return dataclasses.replace(act, params=dict(params)), set(params)
    return act, set()


def _param_summary(acts) -> str:
    parts = [f"{a.name}: {', '.join(a.params)}" for a in acts if isinstance(a.params, dict)]
    return "; ".join(parts) if parts else "none of the chosen activations has parameters"


# --- Computation ------------------------------------------------------------------------


def _compute(act: jaxsig.Activation, sigma, mu):
    """``(Signature, Auxiliary)`` of ``act`` at 1-D ``(sigma, mu)``, as NumPy arrays.

    The inputs are padded (repeating the last entry) to a power of two, at least
    16, so that tables and reports of different sizes share compiled programs
    (in this process and in the persistent cache): compiling costs seconds, the
    padded entries microseconds. Input errors become :class:`CLIError`.
    """
    sigma, mu = np.broadcast_arrays(np.ravel(np.asarray(sigma, float)), np.ravel(np.asarray(mu, float)))
    n = sigma.size
    size = max(16, 1 << (n - 1).bit_length())
    pad = lambda v: np.concatenate([v, np.full(size - n, v[-1])])  # noqa: E731
    try:
        out = jaxsig.signature(act, pad(sigma), mu=pad(mu), with_aux=True)
    except (ValueError, TypeError, ArithmeticError) as e:
        raise CLIError(f"activation {act.name!r}: {e}") from None
    return _numpy(out, lambda v: v[:n])


def _numpy(tree, then=lambda v: v):
    """``then(leaf)`` for every array leaf of ``tree``, as NumPy arrays."""
    return jax.tree_util.tree_map(lambda v: then(np.asarray(v)), tree)


def _stack(rows):
    """Stack a list of NamedTuples of arrays along a new leading axis."""
    return type(rows[0])(*(np.stack(f) for f in zip(*rows)))


@contextlib.contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """``step(label)`` announces the next of ``total`` steps on stderr.

    A rich progress bar on a terminal (when rich is installed), plain lines
    otherwise, nothing when disabled.
    """
    if not enabled:
        yield lambda label: None
        return
    done = 0
    if sys.stderr.isatty():
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
            from rich.progress import TimeElapsedColumn
        except ImportError:
            pass
        else:
            columns = (SpinnerColumn(), TextColumn("{task.description:<28}"), BarColumn(),
                       MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("", total=total)

                def step(label):
                    nonlocal done
                    bar.update(task, description=label, completed=done)  # steps before this one
                    done += 1

                yield step
            return
    t0 = time.perf_counter()

    def step(label):
        nonlocal done
        done += 1
        print(f"jaxsig: [{done}/{total}] {label} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    yield step


# --- Formatting ------------------------------------------------------------------------------


def _fmt(v, digits: int = _NUMERIC_DIGITS) -> str:
    """A number for tables: 6 significant digits, inf/-inf, NaN as 'undefined', tiny as 0."""
    return taxonomy.format_number(v, digits)


def _json_number(v):
    v = float(v)
    if math.isnan(v):
        return None
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def _jsonable(tree):
    """NumPy arrays/scalars to JSON-safe lists and numbers (inf as strings, NaN as null)."""
    if isinstance(tree, dict):
        return {k: _jsonable(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_jsonable(v) for v in tree]
    if isinstance(tree, (bool, np.bool_)):
        return bool(tree)
    if isinstance(tree, (int, np.integer)):
        return int(tree)
    if isinstance(tree, (float, np.floating)):
        return _json_number(tree)
    if isinstance(tree, np.ndarray) or hasattr(tree, "__array__"):
        return _jsonable(np.asarray(tree).tolist())
    return tree


def _render(header: Sequence[str], rows: Sequence[Sequence[str]], fmt: str, align: str = "") -> str:
    """A table as aligned text or Markdown; ``align[i] == 'l'`` left-aligns column i."""
    align = align.ljust(len(header), "r")
    if fmt == "markdown":
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(esc(h) for h in header) + " |",
                 "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]
    pad = lambda s, i: str(s).ljust(widths[i]) if align[i] == "l" else str(s).rjust(widths[i])  # noqa: E731
    lines = ["  ".join(pad(h, i) for i, h in enumerate(header)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(pad(c, i) for i, c in enumerate(row)).rstrip() for row in rows]
    return "\n".join(lines)


def _signature_rows(names, sigs: jaxsig.Signature):
    """Rows ``name, m1 .. c`` of a stacked ``(n,)`` signature, formatted."""
    return [[name] + [_fmt(getattr(sigs, f)[i]) for f in jaxsig.FIELDS] for i, name in enumerate(names)]


def _class_rows(classes: Sequence[taxonomy.Classification]):
    header = ["activation", "class", "bounded", "saturates -/+", "kinks", "smooth", "parity",
              "monotone", "infinite"]
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    rows = [
        [c.name, c.growth, yes(c.bounded),
         f"{yes(c.saturating_minus)}/{yes(c.saturating_plus)}",
         ",".join(_fmt(k) for k in c.kinks) or "-", yes(c.smooth), c.parity, yes(c.monotone),
         ",".join(c.infinite + tuple(f"{u}(undefined)" for u in c.undefined)) or "-"]
        for c in classes
    ]
    return header, rows


def _card_rows(names, card: taxonomy.ReportCard):
    header = ["activation"] + [
        f"{info.number} {info.symbol} {info.relation} {_fmt(float(np.ravel(getattr(card, k).threshold)[0]), 4)}"
        for k, info in taxonomy.PRINCIPLES.items()
    ] + ["sW^2", "passed"]
    rows = []
    for i, name in enumerate(names):
        lines = taxonomy.explain(card, i)
        cells = [f"{_fmt(ln.value, 4)} {'pass' if ln.passed else 'FAIL'}" for ln in lines]
        n_pass = sum(ln.passed for ln in lines)
        rows.append([name] + cells + [_fmt(card.weight_variance[i], 4), f"{n_pass}/{len(lines)}"])
    return header, rows


# --- jaxsig table ------------------------------------------------------------------------------


def _cmd_table(args) -> int:
    acts = _activations_from_args(args)
    s_grid, m_grid = np.meshgrid(np.asarray(args.sigma, float), np.asarray(args.mu, float), indexing="ij")
    sigma, mu = s_grid.ravel(), m_grid.ravel()
    records = []
    with _progress(len(acts), enabled=len(acts) > 1 and args.format == "text") as step:
        for act in acts:
            step(act.name)
            sig, _ = _compute(act, sigma, mu)
            records += [(act.name, sigma[j], mu[j], sig, j) for j in range(sigma.size)]
    columns = ["activation", "sigma", "mu", *jaxsig.FIELDS]
    values = [[name, s, m, *(getattr(sig, f)[j] for f in jaxsig.FIELDS)] for name, s, m, sig, j in records]
    if args.format == "json":
        print(json.dumps([dict(zip(columns, _jsonable(v))) for v in values], indent=2, allow_nan=False))
    elif args.format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([v[0], *(repr(float(x)) for x in v[1:])] for v in values)
        print(buf.getvalue(), end="")
    else:
        several = sigma.size > 1
        keep = columns if several else [columns[0], *columns[3:]]
        rows = [[v[0]] + [_fmt(x) for x in (v[1:] if several else v[3:])] for v in values]
        table = _render(keep, rows, args.format, align="l")
        if not several and args.format == "text":
            print(f"Integral signature at sigma = {_fmt(sigma[0])}, mu = {_fmt(mu[0])}")
        print(table)
    return EXIT_OK


# --- jaxsig report ---------------------------------------------------------------------------------


def _prepare_out(path: Path) -> Path:
    """Create the output folder and prove it writable, before any long computation."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".jaxsig-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CLIError(f"cannot write to output folder '{path}': {e.strerror or e}") from None
    return path


def _cmd_report(args) -> int:
    acts = _activations_from_args(args)
    if args.sigma_min >= args.sigma_max:
        raise CLIError(f"--sigma-min ({args.sigma_min}) must be below --sigma-max ({args.sigma_max})")
    if args.bias_variance >= args.sigma**2:
        raise CLIError(
            f"--bias-variance ({args.bias_variance}) must be below sigma^2 = {args.sigma**2:g}: "
            "no positive weight variance keeps q = sigma^2 fixed otherwise"
        )
    figures = [] if args.no_figures else ["components.png", "g2_vs_tv.png", "shapes.png"]
    if figures:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("the figures need matplotlib: pip install 'jaxsig[cli]', or pass --no-figures") from None
    out = _prepare_out(args.out)
    grid = np.geomspace(args.sigma_min, args.sigma_max, args.sigma_num)
    # The card's sigma rides along as one more grid entry: one compiled call per activation.
    sigma = np.append(grid, args.sigma)
    t0 = time.perf_counter()
    results, classes = [], []
    with _progress(len(acts) + len(figures), enabled=not args.quiet) as step:
        for act in acts:
            step(f"signature: {act.name}")
            sig, aux = _compute(act, sigma, args.mu)
            try:
                classes.append(taxonomy.classify(act, signature=(sig, aux)))
            except (ValueError, TypeError) as e:
                raise CLIError(f"activation {act.name!r}: {e}") from None
            results.append((sig, aux))
        names = [a.name for a in acts]
        # The last entry of every field is the card's sigma; the rest is the grid.
        on_grid = {n: (_numpy(s, lambda v: v[:-1]), _numpy(a, lambda v: v[:-1])) for n, (s, a) in zip(names, results)}
        at_card = {n: (_numpy(s, lambda v: v[-1]), _numpy(a, lambda v: v[-1])) for n, (s, a) in zip(names, results)}
        card_sig = _stack([at_card[n][0] for n in names])
        card_aux = _stack([at_card[n][1] for n in names])
        card = _numpy(taxonomy.report_card(
            card_sig, card_aux, args.sigma, bias_variance=args.bias_variance, g2_max=args.g2_max,
            variance_slope_max=args.variance_slope_max, m1_max=args.m1_max, b_max=args.b_max,
            tv_max=args.tv_max,
        ))
        if figures:
            from jaxsig.app import plotting

            grid_sigs = {n: on_grid[n][0] for n in names}
            step("figure: components.png")
            plotting.plot_components(grid, grid_sigs, mu=args.mu, path=out / "components.png")
            step("figure: g2_vs_tv.png")
            plotting.plot_g2_tv(grid, grid_sigs, {n: at_card[n][0] for n in names}, card_sigma=args.sigma,
                                g2_max=args.g2_max, tv_max=args.tv_max, path=out / "g2_vs_tv.png")
            step("figure: shapes.png")
            plotting.plot_shapes(acts, at_card, classes=classes, path=out / "shapes.png")
    elapsed = time.perf_counter() - t0

    header = ["activation", *jaxsig.FIELDS]
    sig_table = _signature_rows(names, card_sig)
    class_header, class_rows = _class_rows(classes)
    card_header, card_rows = _card_rows(names, card)
    title = f"sigma = {_fmt(args.sigma)}, mu = {_fmt(args.mu)}"
    try:
        _write_report(out, args, acts, names, grid, results, classes, card, figures, elapsed,
                      (header, sig_table), (class_header, class_rows), (card_header, card_rows))
    except OSError as e:
        raise CLIError(f"cannot write to output folder '{out}': {e.strerror or e}") from None
    if not args.quiet:
        print(f"Integral signature at {title}\n")
        print(_render(header, sig_table, "text", "l"))
        print("\nGrowth class and shape\n")
        print(_render(class_header, class_rows, "text", "lllllllll"))
        print(f"\nDesign-principle report card at {title} (value, pass/FAIL)\n")
        print(_render(card_header, card_rows, "text", "l"))
        print(f"\nWrote {', '.join(['report.md', 'signature.json', 'signature.csv', *figures])} "
              f"to {out}/ ({elapsed:.1f} s)")
    return EXIT_OK


def _write_report(out, args, acts, names, grid, results, classes, card, figures, elapsed,
                  sig_table, class_table, card_table):
    dtype = str(np.asarray(results[0][0].m1).dtype)
    command = "jaxsig " + shlex.join(args.argv)
    thresholds = dict(g2_max=args.g2_max, variance_slope_max=args.variance_slope_max,
                      bias_variance=args.bias_variance, m1_max=args.m1_max, b_max=args.b_max,
                      tv_max=args.tv_max, c_max=math.inf)

    # signature.json: everything, per activation.
    entries = []
    for i, (act, (sig, aux), cls) in enumerate(zip(acts, results, classes)):
        lines = taxonomy.explain(card, i)
        entries.append({
            "name": act.name,
            "formula": act.formula,
            "params": act.params if isinstance(act.params, dict) else None,
            "kinks": list(act.kinks),
            "classification": cls._asdict(),
            "signature": {f: getattr(sig, f)[:-1] for f in jaxsig.FIELDS},
            "auxiliary": {f: getattr(aux, f)[:-1] for f in jaxsig.AUX_FIELDS},
            "at_sigma": {
                "signature": {f: getattr(sig, f)[-1] for f in jaxsig.FIELDS},
                "auxiliary": {f: getattr(aux, f)[-1] for f in jaxsig.AUX_FIELDS},
            },
            "report_card": {
                **{ln.key: {"rule": ln.rule, "value": ln.value, "threshold": ln.threshold,
                            "passed": ln.passed, "explanation": ln.sentence} for ln in lines},
                **{k: getattr(card, k)[i] for k in ("weight_variance", "log_slope", "chi1", "correlation")},
            },
        })
    doc = {
        "jaxsig_version": jaxsig.__version__,
        "jax_version": jax.__version__,
        "command": command,
        "dtype": dtype,
        "mu": args.mu,
        "sigma": grid,
        "card_sigma": args.sigma,
        "thresholds": thresholds,
        "encoding": "infinite values are the strings 'inf'/'-inf'; undefined values are null",
        "activations": entries,
    }
    (out / "signature.json").write_text(json.dumps(_jsonable(doc), indent=1, allow_nan=False) + "\n")

    # signature.csv: one row per (activation, sigma) of the grid and the card's sigma.
    aux_cols = ("g4", "b", "beta_plus", "beta_minus", "dm2_dsigma")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["activation", "sigma", "mu", *jaxsig.FIELDS, *aux_cols, "growth"])
    sigma_all = np.append(grid, args.sigma)
    order = np.argsort(sigma_all, kind="stable")
    for name, (sig, aux), cls in zip(names, results, classes):
        seen = set()
        for j in order:
            if sigma_all[j] in seen:
                continue
            seen.add(sigma_all[j])
            writer.writerow([name, repr(float(sigma_all[j])), repr(float(args.mu)),
                             *(repr(float(getattr(sig, f)[j])) for f in jaxsig.FIELDS),
                             *(repr(float(getattr(aux, f)[j])) for f in aux_cols), cls.growth])
    (out / "signature.csv").write_text(buf.getvalue())

    # report.md
    md = [
        "# Integral signatures of activation functions",
        "",
        f"Generated by `{command}` with jaxsig {jaxsig.__version__} (JAX {jax.__version__}, {dtype}) "
        f"in {elapsed:.1f} s. Pre-activations are `X = mu + sigma Z`, `Z ~ N(0, 1)`, with mu = "
        f"{_fmt(args.mu)}; the sigma grid has {grid.size} log-spaced points in "
        f"[{_fmt(grid[0])}, {_fmt(grid[-1])}]. Definitions: `SPEC.md`; data: `signature.json`, "
        "`signature.csv`.",
        "",
        f"## Signature at sigma = {_fmt(args.sigma)}",
        "",
        _render(*sig_table, "markdown", "l"),
        "",
        "`inf`: the component diverges; `undefined`: its defining limit does not exist.",
        "",
        "## Growth class and shape",
        "",
        "A0: bounded; A1: unbounded, at most linear growth; A>1: superlinear. Kinks are the "
        "points where phi' jumps; a function with a cusp (phi' unbounded) is not smooth.",
        "",
        _render(*class_table, "markdown", "lllllllll"),
        "",
        f"## Design-principle report card at sigma = {_fmt(args.sigma)}",
        "",
        "Principles of SPEC, with q = sigma^2 and sb^2 = "
        f"{_fmt(args.bias_variance)}: (1) contraction, (2) variance management (V'(q*) is the "
        "slope of the variance map at the fixed point q that the weight variance sW^2 = "
        "(q - sb^2)/m2 maintains), (3) bias drift, (4) kernel conditioning, (5) tail "
        "compensation. Threshold on each column.",
        "",
        _render(*card_table, "markdown", "l"),
        "",
    ]
    if figures:
        md += [
            "## Figures",
            "",
            "Each component against sigma (log scale):",
            "",
            "![components](components.png)",
            "",
            f"g2 against tv at sigma = {_fmt(args.sigma)}, with the principle thresholds (bars: "
            "the range of g2 over the sigma grid; tv = inf is drawn at the right edge):",
            "",
            "![g2 against tv](g2_vs_tv.png)",
            "",
            "Activation shapes with their affine asymptotes `alpha x + beta` (dashed):",
            "",
            "![shapes](shapes.png)",
            "",
        ]
    md += ["## What each report card says", ""]
    for i, name in enumerate(names):
        md += [f"### {name}", ""]
        for ln in taxonomy.explain(card, i):
            verdict = "pass" if ln.passed else "**FAIL**"
            md.append(f"- ({ln.number}) {ln.title}, `{ln.rule}`: {_fmt(ln.value, 4)}, {verdict}; {ln.sentence}")
        md.append("")
    (out / "report.md").write_text("\n".join(md))


# --- jaxsig design ------------------------------------------------------------------------------


def _cmd_design(args) -> int:
    from jaxsig.designing import search as designer
    from jaxsig.designing import families
    from jaxsig.designing import targets

    try:
        family = families.get(args.family)
    except KeyError as e:
        raise CLIError(e.args[0]) from None
    try:
        tg = targets.parse_targets(args.target, sigma=args.sigma)
    except targets.TargetError as e:
        # The grammar is in 'jaxsig design --help'; the error itself stays one line.
        raise CLIError(f"--target: {str(e).splitlines()[0]} (grammar: 'jaxsig design --help')") from None
    if args.rounds > args.steps:
        raise CLIError(f"--rounds ({args.rounds}) must not exceed --steps ({args.steps})")
    if args.out is not None:
        if args.out.is_dir():
            raise CLIError(f"--out {args.out} is a folder; give a file name such as result.json")
        _prepare_out(args.out.parent if str(args.out.parent) else Path("."))
    result = designer.design(
        family, tg, steps=args.steps, rounds=args.rounds, restarts=args.restarts, seed=args.seed,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if args.out is not None:
        try:
            result.save(args.out)
        except OSError as e:
            raise CLIError(f"cannot write {args.out}: {e.strerror or e}") from None
    if not args.quiet:
        print(result.summary())
        if args.out is not None:
            print(f"Wrote {args.out}")
    return EXIT_OK if result.feasible else 1


# --- jaxsig phase ---------------------------------------------------------------------------------


def _range_of(item: Callable[[str], float]) -> Callable[[str], tuple[float, float]]:
    """Parse ``MIN,MAX`` with ``MIN < MAX``."""
    pair = _list_of(item)

    def parse(text: str) -> tuple[float, float]:
        values = pair(text)
        if len(values) != 2 or not values[0] < values[1]:
            raise argparse.ArgumentTypeError(f"expected MIN,MAX with MIN < MAX, got {text!r}")
        return values[0], values[1]

    return parse


def _cmd_phase(args) -> int:
    from jaxsig.theory import meanfield as dynamics

    acts = _activations_from_args(args)
    figures = not args.no_figure
    if figures:
        if len(acts) > 1 and "{name}" not in args.out:
            raise CLIError(f"--out {args.out!r} must contain '{{name}}' when several activations are chosen")
        for act in acts:
            _prepare_out(Path(args.out.format(name=act.name)).parent)
    sb2 = np.linspace(*args.sigma_b2, args.rows)
    records, written = [], []
    for act in acts:
        try:
            edge = _numpy(dynamics.edge_of_chaos(act, sb2))
        except (ValueError, TypeError, ArithmeticError) as e:
            raise CLIError(f"activation {act.name!r}: {e}") from None
        records += [(act.name, *r) for r in zip(sb2, edge.sigma_w2, edge.q_star, edge.slope)]
        if figures:
            from jaxsig.app.plotting import dynamics as plotting_dynamics

            path = args.out.format(name=act.name)
            try:
                plotting_dynamics.plot_phase_diagram(
                    act, sigma_w2=args.sigma_w2, sigma_b2=args.sigma_b2, resolution=max(args.resolution, 2), path=path
                )
            except ImportError as e:
                raise CLIError(str(e)) from None
            written.append(path)
    columns = ["activation", "sigma_b2", "sigma_w2_critical", "q_star", "variance_slope"]
    if args.format == "json":
        print(json.dumps([dict(zip(columns, _jsonable(list(r)))) for r in records], indent=2, allow_nan=False))
    else:
        rows = [[name, _fmt(b), _fmt(w), _fmt(q), _fmt(v)] for name, b, w, q, v in records]
        if args.format == "text":
            print("Edge of chaos: chi1 = sW^2 g2(sqrt q*)^2 = 1. q* = inf: no finite critical fixed point; "
                  "V'(q*) > 1: the critical fixed point repels the variance.")
        print(_render(["activation", "sb^2", "critical sW^2", "q*", "V'(q*)"], rows, args.format, align="l"))
        for path in written:
            print(f"Wrote {path}")
    return EXIT_OK
