"""``jaxsig phase``: the mean-field phase diagram of each activation (the edge of
chaos over ``(sW^2, sb^2)``), or the stability plane ``(dm2/dsigma, g2)`` of a
family swept over one parameter (``--plane m2prime-g2``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import jaxsig
from jaxsig.app._common import (
    EXIT_OK,
    CLIError,
    activations_from_args,
    add_activation_options,
    add_compute_options,
    as_numpy,
    finite_float,
    fmt,
    nonneg_float,
    parse_params,
    positive_float,
    positive_int,
    prepare_out,
    range_of,
    render,
    resolve,
)
from jaxsig.core._format import to_json

__all__ = ["add_phase_parser"]


def add_phase_parser(sub) -> None:
    """Register ``jaxsig phase`` on the subcommand parsers ``sub``."""
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
