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

Adding a subcommand: write ``_cmd_<name>(args) -> int``, register it in
:func:`_build_parser` with ``sub.add_parser`` (reuse :func:`_add_activation_options`
and :func:`_add_compute_options`), resolve activations with
:func:`_activations_from_args`, and raise :class:`CLIError` for bad input.
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
    as_numpy,
    compilation_cache,
    compute_signature,
    fast_compile,
    finite_float,
    finite_floats,
    fmt,
    nonneg_float,
    parse_params,
    positive_float,
    positive_floats,
    positive_int,
    prepare_out,
    range_of,
    render,
    resolve,
)
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
    _add_phase_parser(sub)
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


def _add_phase_parser(sub) -> None:
    p = sub.add_parser(
        "phase",
        help="mean-field phase diagram: chi1 over (sW^2, sb^2) and the edge of chaos, or the stability plane",
        description=(
            "--plane sw2-sb2 (default): for each activation, print the edge of chaos (chi1 = sW^2 g2(sqrt q*)^2 = 1): "
            "the critical weight variance sW^2 and fixed point q* for bias variances sb^2 across --sigma-b2, and "
            "draw the phase diagram (log chi1 over the (sW^2, sb^2) plane) as a PNG. "
            "--plane m2prime-g2: sweep one parameter of a family (--family, --param NAME=LO:HI), place each "
            "member at (dm2/dsigma, g2) at sigma = sqrt(q) with the variance-preserving sW^2 = q / m2 and "
            "sb^2 = 0, print V'(q) = sigma m2' / (2 m2) and chi1 = q g2^2 / m2, and draw the plane with the "
            "boundaries V' = 1 (m2' = 2 sigma m2 / q) and chi1 = 1 (g2 = sqrt(m2 / q))."
        ),
    )
    add_activation_options(p, default=("tanh",))
    _add_plane_options(p)
    p.add_argument(
        "--sigma-w2",
        type=range_of(nonneg_float),
        default=(0.05, 4.0),
        metavar="MIN,MAX",
        help="weight-variance axis of the figure (default: 0.05,4)",
    )
    p.add_argument(
        "--sigma-b2",
        type=range_of(nonneg_float),
        default=(0.0, 0.5),
        metavar="MIN,MAX",
        help="bias-variance range of the table and the figure (default: 0,0.5)",
    )
    p.add_argument(
        "--rows",
        type=positive_int,
        default=6,
        metavar="N",
        help="sb^2 values printed, evenly spaced over --sigma-b2 (default: 6)",
    )
    p.add_argument(
        "--resolution",
        type=positive_int,
        default=48,
        metavar="N",
        help="grid points per axis of the figure (default: 48)",
    )
    p.add_argument(
        "--out",
        default="phase-{name}.png",
        metavar="FILE",
        help="PNG path; '{name}' is replaced by the activation (or family) name, required with "
        "several activations (default: phase-{name}.png)",
    )
    p.add_argument("--no-figure", action="store_true", help="print the table only")
    p.add_argument(
        "--format",
        choices=("text", "json", "markdown"),
        default="text",
        help="output format of the table (default: text)",
    )
    add_compute_options(p)
    p.set_defaults(func=_cmd_phase)


def _add_plane_options(p) -> None:
    """Options of ``--plane m2prime-g2`` (the stability plane of a family)."""
    p.add_argument(
        "--plane",
        choices=("sw2-sb2", "m2prime-g2"),
        default="sw2-sb2",
        help="sw2-sb2: the phase diagram of each activation (default); m2prime-g2: a family in the "
        "(dm2/dsigma, g2) plane (needs --family and one --param NAME=LO:HI)",
    )
    p.add_argument(
        "--family",
        default=None,
        metavar="NAME",
        help="with --plane m2prime-g2: a family (swish_beta, scaled_elu, ...; families first, as in 'jaxsig design'), "
        "a registered activation with parameters (leaky_relu, softplus_beta) or package.module:attribute",
    )
    p.add_argument(
        "--q",
        type=positive_float,
        default=1.0,
        metavar="Q",
        help="with --plane m2prime-g2: the preserved variance, sigma = sqrt(Q) (default: 1)",
    )
    p.add_argument(
        "--points",
        type=positive_int,
        default=33,
        metavar="N",
        help="with --plane m2prime-g2: parameter values, evenly spaced over LO:HI (default: 33)",
    )


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


# --- jaxsig phase ---------------------------------------------------------------------------------


def _cmd_phase(args) -> int:
    from jaxsig.theory import meanfield as dynamics

    if args.plane == "m2prime-g2":
        return _cmd_stability_plane(args)
    if args.family is not None:
        raise CLIError("--family is for --plane m2prime-g2; the sw2-sb2 diagram takes -a/--activations")
    acts = activations_from_args(args)
    figures = not args.no_figure
    if figures:
        if len(acts) > 1 and "{name}" not in args.out:
            raise CLIError(f"--out {args.out!r} must contain '{{name}}' when several activations are chosen")
        for act in acts:
            prepare_out(Path(args.out.format(name=act.name)).parent)
    sb2 = np.linspace(*args.sigma_b2, args.rows)
    records, written = [], []
    for act in acts:
        try:
            edge = as_numpy(dynamics.edge_of_chaos(act, sb2))
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
        print(json.dumps([dict(zip(columns, to_json(list(r)))) for r in records], indent=2, allow_nan=False))
    else:
        rows = [[name, fmt(b), fmt(w), fmt(q), fmt(v)] for name, b, w, q, v in records]
        if args.format == "text":
            print(
                "Edge of chaos: chi1 = sW^2 g2(sqrt q*)^2 = 1. q* = inf: no finite critical fixed point; "
                "V'(q*) > 1: the critical fixed point repels the variance."
            )
        print(render(["activation", "sb^2", "critical sW^2", "q*", "V'(q*)"], rows, args.format, align="l"))
        for path in written:
            print(f"Wrote {path}")
    return EXIT_OK


def _plane_family(name: str) -> jaxsig.Activation:
    """The family of ``--family``: the one name resolver preferring families (as ``jaxsig design``
    does: a sweep needs parameters), or a user object ``package.module:attribute``."""
    if ":" in name:
        return resolve(name)[0]
    try:
        return jaxsig.activations.resolve(name, prefer="family")
    except KeyError as e:
        raise CLIError(f"--family: {e.args[0]}") from None


def _plane_params(act, items):
    """``(name, lo, hi)`` of the one ``NAME=LO:HI`` and the fixed ``NAME=VALUE`` parameters."""
    scalar = [k for k, v in (act.params or {}).items() if np.ndim(v) == 0] if isinstance(act.params, dict) else []
    if not scalar:
        raise CLIError(f"--family {act.name!r} has no scalar parameters to sweep")
    sweep, fixed = [], {}
    for item in items:
        name, sep, value = (t.strip() for t in item.partition("="))
        if not sep or name not in scalar:
            raise CLIError(f"--param {item!r}: expected NAME=LO:HI or NAME=VALUE with NAME one of {', '.join(scalar)}")
        if ":" in value:
            try:
                lo, hi = (finite_float(t) for t in value.split(":"))
            except (ValueError, argparse.ArgumentTypeError):
                raise CLIError(f"--param {item!r}: expected NAME=LO:HI with finite numbers LO < HI") from None
            if not lo < hi:
                raise CLIError(f"--param {item!r}: expected LO < HI")
            sweep.append((name, lo, hi))
        else:
            fixed.update(parse_params([item]))
    if len(sweep) != 1:
        raise CLIError(f"--plane m2prime-g2 sweeps exactly one --param NAME=LO:HI (of {', '.join(scalar)})")
    return sweep[0], {**act.params, **fixed}


def _cmd_stability_plane(args) -> int:
    from jaxsig.theory import stability

    if args.family is None:
        raise CLIError("--plane m2prime-g2 needs --family NAME and --param NAME=LO:HI")
    if args.activations:
        raise CLIError("--plane m2prime-g2 takes --family, not -a/--activations")
    act = _plane_family(args.family)
    (name, lo, hi), params = _plane_params(act, args.param)
    path = None if args.no_figure else args.out.format(name=act.name)
    if path is not None:
        prepare_out(Path(path).parent)
    values = np.linspace(lo, hi, args.points)
    try:
        data = as_numpy(stability.stability_plane(act, name, values, q=args.q, params=params))
    except (ValueError, TypeError, ArithmeticError) as e:
        raise CLIError(f"family {act.name!r}: {e}") from None
    if path is not None:
        from jaxsig.app.plotting import dynamics as plotting_dynamics

        try:
            plotting_dynamics.plot_stability_plane(
                act, name, params=params, data=stability.StabilityPlane(*data), path=path
            )
        except ImportError as e:
            raise CLIError(str(e)) from None
    fields = ("dm2_dsigma", "g2", "sigma_w2", "variance_slope", "chi1", "dm2_dsigma_critical", "g2_critical")
    records = [
        [float(v), *(float(getattr(data, f)[i]) for f in fields)]
        + [stability.VARIANCE_PHASES[int(data.variance_phase[i])], stability.CHI_PHASES[int(data.phase[i])]]
        for i, v in enumerate(data.values)
    ]
    if args.format == "json":
        keys = [name, *fields, "variance_phase", "phase"]
        print(json.dumps([dict(zip(keys, to_json(r))) for r in records], indent=2, allow_nan=False))
    else:
        if args.format == "text":
            print(
                f"{act.name} at sigma = sqrt(q) = {fmt(float(data.sigma))}, sW^2 = q / m2, sb^2 = 0: "
                "V' = sigma m2' / (2 m2) (< 1: the variance q attracts), chi1 = q g2^2 / m2 (< 1: ordered)."
            )
        header = [name, "dm2/dsigma", "g2", "sW^2", "V'(q)", "chi1", "V'=1 at m2'", "chi1=1 at g2", "variance", "phase"]
        rows = [[*(fmt(x) for x in r[:8]), r[8], r[9]] for r in records]
        print(render(header, rows, args.format))
        if path is not None:
            print(f"Wrote {path}")
    return EXIT_OK
