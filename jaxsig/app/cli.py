"""The ``jaxsig`` command: signature tables and the full activation report.

Usage (also ``python -m jaxsig``)::

    jaxsig report                       # the standard activations, a folder of results
    jaxsig report -a relu,gelu,mypkg.acts:my_act --param beta=1.5 --out my-report
    jaxsig table --sigma 0.5,1,2 --format markdown
    jaxsig design --family rational --target "g2<=0.8" --target "tv<5" --out result.json
    jaxsig phase -a tanh,relu --sigma-b2 0,0.3 --out phase-{name}.png
    jaxsig phase --plane m2prime-g2 --family swish_beta --param shift=-1:1 --out plane-{name}.png
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

Adding a subcommand: in its own module ``jaxsig/app/<name>.py`` (as ``report.py``
and ``phase.py``), write ``add_<name>_parser(sub)``, which calls
``sub.add_parser`` (reuse ``add_activation_options`` and ``add_compute_options``
of ``jaxsig.app._common``) and sets ``func`` to ``_cmd_<name>(args) -> int``;
register it in :func:`_build_parser`, resolve activations with
``activations_from_args``, and raise :class:`CLIError` for bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

import jaxsig
from jaxsig.app._common import (
    DEFAULT_ACTIVATIONS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    Parser,
    activations_from_args,
    add_activation_options,
    add_compute_options,
    compilation_cache,
    compute_signature,
    fast_compile,
    finite_float,
    finite_floats,
    fmt,
    nonneg_float,
    positive_float,
    positive_floats,
    positive_int,
    prepare_out,
    render,
)
from jaxsig.app.phase import add_phase_parser
from jaxsig.app.report import add_report_parser
from jaxsig.core._format import to_json
from jaxsig.core._progress import progress

__all__ = ["main", "CLIError", "DEFAULT_ACTIVATIONS"]

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
            fast_compile(),
            warnings.catch_warnings(),
            jax.enable_x64(getattr(args, "x64", True)),
            compilation_cache(getattr(args, "cache_dir", None)),
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
    parser = Parser(
        prog="jaxsig",
        description=(
            "The integral signature (m1, g1, g2, m2, eta, alpha_plus, alpha_minus, tv, c) "
            "of activation functions (arXiv:2510.08456), with growth classes and a "
            "design-principle report card."
        ),
        epilog="Run 'jaxsig report' for the full comparison of the standard activations.",
    )
    parser.add_argument("--version", action="version", version=f"jaxsig {jaxsig.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    add_report_parser(sub)
    _add_table_parser(sub)
    _add_design_parser(sub)
    add_phase_parser(sub)
    return parser


def _add_table_parser(sub) -> None:
    p = sub.add_parser(
        "table",
        help="the signature table only",
        description="Print the nine signature components of each activation at each (sigma, mu).",
    )
    add_activation_options(p)
    p.add_argument(
        "--sigma",
        type=positive_floats,
        default=[1.0],
        metavar="S[,S...]",
        help="input scale(s), comma-separated (default: 1)",
    )
    p.add_argument(
        "--mu",
        type=finite_floats,
        default=[0.0],
        metavar="M[,M...]",
        help="input mean(s), comma-separated (default: 0)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "csv", "markdown"),
        default="text",
        help='output format (default: text). json: inf as "inf"/"-inf", undefined as null; csv: inf, -inf, nan',
    )
    add_compute_options(p)
    p.set_defaults(func=_cmd_table)


def _add_design_parser(sub) -> None:
    """Register ``jaxsig design`` (long: one ``add_argument`` per option)."""
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
    p.add_argument(
        "--family",
        default="rational",
        metavar="NAME",
        help="family to search: " + ", ".join(_families.names()) + " (default: rational)",
    )
    p.add_argument(
        "--target",
        action="append",
        required=True,
        metavar="TARGET",
        help='a target such as "g2<=0.8", "tv<5", "m2==1", "c<inf", "minimize eta" (repeatable; grammar below)',
    )
    p.add_argument(
        "--sigma",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="input scale of targets given without @sigma (default: 1)",
    )
    p.add_argument(
        "--q",
        type=positive_float,
        default=1.0,
        metavar="Q",
        help="operating point of mean-field targets (chi1, dV, xi_q, xi_c): the variance kept fixed by "
        "sW^2 = (q - sb^2) / m2(sqrt q) (default: 1)",
    )
    p.add_argument(
        "--sigma-b2",
        type=nonneg_float,
        default=0.0,
        metavar="SB2",
        help="bias variance of that operating point, below --q (default: 0; then m1 == 0 forces chi1 >= 1)",
    )
    p.add_argument(
        "--fixed",
        action="append",
        default=[],
        metavar="NAME=V",
        help="hold a parameter at a value, not optimised: shift=0, numerator[0]=0, denominator=0,1,0.1 (repeatable)",
    )
    p.add_argument(
        "--bound",
        action="append",
        default=[],
        metavar="NAME=LO,HI",
        help="keep a parameter in [LO, HI] (inf, -inf for one side): alpha=0,3 (repeatable)",
    )
    p.add_argument(
        "--steps", type=positive_int, default=500, metavar="N", help="optimizer steps per restart (default: 500)"
    )
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=10,
        metavar="N",
        help="augmented-Lagrangian rounds the steps are split into (default: 10)",
    )
    p.add_argument(
        "--restarts",
        type=positive_int,
        default=8,
        metavar="N",
        help="starting points searched together; the first is the family's default (default: 8)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random restarts (default: 0)")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="write the result as JSON to FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    add_compute_options(p)
    p.set_defaults(func=_cmd_design)


# --- jaxsig table ------------------------------------------------------------------------------


def _cmd_table(args) -> int:
    acts = activations_from_args(args)
    s_grid, m_grid = np.meshgrid(np.asarray(args.sigma, float), np.asarray(args.mu, float), indexing="ij")
    sigma, mu = s_grid.ravel(), m_grid.ravel()
    records = []
    with progress(len(acts), len(acts) > 1 and args.format == "text", "jaxsig table") as step:
        for act in acts:
            step(act.name)
            sig, _ = compute_signature(act, sigma, mu)
            records += [(act.name, sigma[j], mu[j], sig, j) for j in range(sigma.size)]
    columns = ["activation", "sigma", "mu", *jaxsig.FIELDS]
    values = [[name, s, m, *(getattr(sig, f)[j] for f in jaxsig.FIELDS)] for name, s, m, sig, j in records]
    if args.format == "json":
        print(json.dumps([dict(zip(columns, to_json(v))) for v in values], indent=2, allow_nan=False))
    elif args.format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([v[0], *(repr(float(x)) for x in v[1:])] for v in values)
        print(buf.getvalue(), end="")
    else:
        several = sigma.size > 1
        keep = columns if several else [columns[0], *columns[3:]]
        rows = [[v[0]] + [fmt(x) for x in (v[1:] if several else v[3:])] for v in values]
        table = render(keep, rows, args.format, align="l")
        if not several and args.format == "text":
            print(f"Integral signature at sigma = {fmt(sigma[0])}, mu = {fmt(mu[0])}")
        print(table)
    return EXIT_OK


# --- jaxsig design ------------------------------------------------------------------------------


def _name_values(items, option: str, pair: bool) -> dict:
    """``NAME=V`` (or ``NAME=V1,V2,...``) items of ``--fixed``; ``NAME=LO,HI`` of ``--bound``."""
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        usage = f"{option} expects {'NAME=LO,HI' if pair else 'NAME=VALUE'}, got {item!r}"
        if not sep or not name:
            raise CLIError(usage)
        try:
            values = [finite_float(t.strip()) if not pair else _bound_number(t.strip()) for t in text.split(",")]
        except argparse.ArgumentTypeError as e:
            raise CLIError(f"{option} {item!r}: {e}") from None
        if pair and len(values) != 2:
            raise CLIError(usage)
        out[name] = tuple(values) if pair else (values[0] if len(values) == 1 else values)
    return out


def _bound_number(text: str) -> float:
    return float(text) if text.lower() in ("inf", "+inf", "-inf") else finite_float(text)


def _cmd_design(args) -> int:
    from jaxsig.designing import families, targets
    from jaxsig.designing import search as designer

    try:
        family = families.get(args.family)
    except KeyError as e:
        raise CLIError(e.args[0]) from None
    if args.sigma_b2 >= args.q:
        raise CLIError(f"--sigma-b2 ({args.sigma_b2:g}) must be below --q ({args.q:g})")
    try:
        tg = targets.parse_targets(args.target, sigma=args.sigma, q=args.q, sigma_b2=args.sigma_b2)
    except targets.TargetError as e:
        # The grammar is in 'jaxsig design --help'; the error itself stays one line.
        raise CLIError(f"--target: {str(e).splitlines()[0]} (grammar: 'jaxsig design --help')") from None
    fixed = _name_values(args.fixed, "--fixed", pair=False)
    bounds = _name_values(args.bound, "--bound", pair=True)
    try:
        from jaxsig.designing import constraints

        constraints.build(family.params, fixed, bounds)
    except (ValueError, TypeError) as e:
        raise CLIError(f"--fixed/--bound: {e}") from None
    if args.rounds > args.steps:
        raise CLIError(f"--rounds ({args.rounds}) must not exceed --steps ({args.steps})")
    if args.out is not None:
        if args.out.is_dir():
            raise CLIError(f"--out {args.out} is a folder; give a file name such as result.json")
        prepare_out(args.out.parent if str(args.out.parent) else Path("."))
    with warnings.catch_warnings():
        # The Poincaré note is printed with the result (and saved with it); no warning on top.
        warnings.filterwarnings("ignore", message="jaxsig.design: at sigma_b2 = 0", category=UserWarning)
        result = designer.design(
            family,
            tg,
            q=args.q,
            sigma_b2=args.sigma_b2,
            fixed=fixed,
            bounds=bounds,
            steps=args.steps,
            rounds=args.rounds,
            restarts=args.restarts,
            seed=args.seed,
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
