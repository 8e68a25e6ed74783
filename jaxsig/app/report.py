"""``jaxsig report``: the full comparison of a set of activations, written to a folder."""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
import time
from pathlib import Path

import jax
import numpy as np

import jaxsig
from jaxsig.app._common import (
    EXIT_OK,
    CLIError,
    activations_from_args,
    add_activation_options,
    add_compute_options,
    as_numpy,
    classification_rows,
    compute_signature,
    finite_float,
    fmt,
    nonneg_float,
    positive_float,
    positive_int,
    render,
    report_card_rows,
    signature_rows,
    stack_rows,
    staged_output,
)
from jaxsig.core._format import to_json
from jaxsig.core._progress import progress
from jaxsig.theory import taxonomy


def add_report_parser(sub) -> None:
    """Register ``jaxsig report`` on the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "report",
        help="full comparison: tables, classes, report cards, JSON/CSV data and figures",
        description=(
            "Compute the signature of each activation over a grid of input scales sigma, "
            "classify it, judge it against the five design principles at --sigma, print the "
            "tables, and write report.md, signature.json, signature.csv and PNG figures to --out."
        ),
    )
    add_activation_options(p)
    p.add_argument(
        "--sigma",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="input scale of the printed table and report cards (default: 1)",
    )
    p.add_argument(
        "--mu",
        type=finite_float,
        default=0.0,
        metavar="M",
        help="input mean, pre-activations are mu + sigma Z (default: 0)",
    )
    p.add_argument(
        "--sigma-min", type=positive_float, default=0.05, metavar="S", help="smallest sigma of the grid (default: 0.05)"
    )
    p.add_argument(
        "--sigma-max", type=positive_float, default=20.0, metavar="S", help="largest sigma of the grid (default: 20)"
    )
    p.add_argument(
        "--sigma-num", type=positive_int, default=64, metavar="N", help="number of log-spaced grid points (default: 64)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("jaxsig-report"),
        metavar="DIR",
        help="output folder, created if needed; files in it are overwritten (default: ./jaxsig-report)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    g = p.add_argument_group("report-card thresholds (defaults from docs/spec.md; bias drift: jaxsig's)")
    g.add_argument("--g2-max", type=finite_float, default=0.8, metavar="X", help="contraction: g2 <= X (default 0.8)")
    g.add_argument(
        "--variance-slope-max",
        type=finite_float,
        default=1.0,
        metavar="X",
        help="variance management: V'(q*) <= X (default 1)",
    )
    g.add_argument(
        "--bias-variance",
        type=nonneg_float,
        default=0.0,
        metavar="X",
        help="sb^2 in the variance map q -> sW^2 m2(sqrt q) + sb^2 (default 0)",
    )
    g.add_argument("--m1-max", type=nonneg_float, default=0.3, metavar="X", help="bias drift: |m1| <= X (default 0.3)")
    g.add_argument("--b-max", type=nonneg_float, default=1.5, metavar="X", help="bias drift: |b| <= X (default 1.5)")
    g.add_argument(
        "--tv-max", type=positive_float, default=5.0, metavar="X", help="kernel conditioning: tv < X (default 5)"
    )
    add_compute_options(p)
    p.set_defaults(func=cmd_report)


# --- jaxsig report ---------------------------------------------------------------------------------


def cmd_report(args) -> int:
    acts = activations_from_args(args)
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
    with staged_output(args.out) as stage:
        return _run_report(args, acts, figures, stage)


def _run_report(args, acts, figures, out: Path) -> int:
    """Compute, print and write the report into the staging folder ``out``.

    (Long by design: the report's steps in order, each one call, with the
    progress line between them.)"""
    grid = np.geomspace(args.sigma_min, args.sigma_max, args.sigma_num)
    # The card's sigma rides along as one more grid entry: one compiled call per activation.
    sigma = np.append(grid, args.sigma)
    t0 = time.perf_counter()
    results, classes = [], []
    with progress(len(acts) + len(figures), not args.quiet, "jaxsig report") as step:
        for act in acts:
            step(f"signature: {act.name}")
            sig, aux = compute_signature(act, sigma, args.mu)
            try:
                classes.append(taxonomy.classify(act, signature=(sig, aux)))
            except (ValueError, TypeError) as e:
                raise CLIError(f"activation {act.name!r}: {e}") from None
            results.append((sig, aux))
        names = [a.name for a in acts]
        # The last entry of every field is the card's sigma; the rest is the grid.
        on_grid = {
            n: (as_numpy(s, lambda v: v[:-1]), as_numpy(a, lambda v: v[:-1])) for n, (s, a) in zip(names, results)
        }
        at_card = {n: (as_numpy(s, lambda v: v[-1]), as_numpy(a, lambda v: v[-1])) for n, (s, a) in zip(names, results)}
        card_sig = stack_rows([at_card[n][0] for n in names])
        card_aux = stack_rows([at_card[n][1] for n in names])
        card = as_numpy(
            taxonomy.report_card(
                card_sig,
                card_aux,
                args.sigma,
                bias_variance=args.bias_variance,
                g2_max=args.g2_max,
                variance_slope_max=args.variance_slope_max,
                m1_max=args.m1_max,
                b_max=args.b_max,
                tv_max=args.tv_max,
            )
        )
        if figures:
            from jaxsig.app import plotting

            grid_sigs = {n: on_grid[n][0] for n in names}
            step("figure: components.png")
            plotting.plot_components(grid, grid_sigs, mu=args.mu, path=out / "components.png")
            step("figure: g2_vs_tv.png")
            plotting.plot_g2_tv(
                grid,
                grid_sigs,
                {n: at_card[n][0] for n in names},
                card_sigma=args.sigma,
                g2_max=args.g2_max,
                tv_max=args.tv_max,
                path=out / "g2_vs_tv.png",
            )
            step("figure: shapes.png")
            plotting.plot_shapes(acts, at_card, classes=classes, path=out / "shapes.png")
    elapsed = time.perf_counter() - t0

    header = ["activation", *jaxsig.FIELDS]
    sig_table = signature_rows(names, card_sig)
    class_header, class_rows = classification_rows(classes)
    card_header, card_rows = report_card_rows(names, card)
    title = f"sigma = {fmt(args.sigma)}, mu = {fmt(args.mu)}"
    try:
        _write_report(
            out,
            args,
            acts,
            names,
            grid,
            results,
            classes,
            card,
            figures,
            elapsed,
            (header, sig_table),
            (class_header, class_rows),
            (card_header, card_rows),
        )
    except OSError as e:
        raise CLIError(f"cannot write to output folder '{args.out}': {e.strerror or e}") from None
    if not args.quiet:
        print(f"Integral signature at {title}\n")
        print(render(header, sig_table, "text", "l"))
        print("\nGrowth class and shape\n")
        print(render(class_header, class_rows, "text", "lllllllll"))
        print(f"\nDesign-principle report card at {title} (value, pass/FAIL)\n")
        print(render(card_header, card_rows, "text", "l"))
        print(
            f"\nWrote {', '.join(['report.md', 'signature.json', 'signature.csv', *figures])} "
            f"to {args.out}/ ({elapsed:.1f} s)"
        )
    return EXIT_OK


def _write_report(
    out, args, acts, names, grid, results, classes, card, figures, elapsed, sig_table, class_table, card_table
):
    """Write ``signature.json``, ``signature.csv`` and ``report.md`` into ``out``."""
    command = "jaxsig " + shlex.join(args.argv)
    doc = _json_document(args, acts, grid, results, classes, card, command)
    (out / "signature.json").write_text(json.dumps(to_json(doc), indent=1, allow_nan=False) + "\n")
    (out / "signature.csv").write_text(_csv_table(args, names, grid, results, classes))
    md = _markdown(args, names, grid, card, figures, elapsed, command, doc["dtype"], sig_table, class_table, card_table)
    (out / "report.md").write_text("\n".join(md))


def _json_document(args, acts, grid, results, classes, card, command) -> dict:
    """``signature.json``: everything, per activation."""
    dtype = str(np.asarray(results[0][0].m1).dtype)
    thresholds = dict(
        g2_max=args.g2_max,
        variance_slope_max=args.variance_slope_max,
        bias_variance=args.bias_variance,
        m1_max=args.m1_max,
        b_max=args.b_max,
        tv_max=args.tv_max,
        c_max=math.inf,
    )

    entries = []
    for i, (act, (sig, aux), cls) in enumerate(zip(acts, results, classes)):
        lines = taxonomy.explain(card, i)
        entries.append(
            {
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
                    **{
                        ln.key: {
                            "rule": ln.rule,
                            "value": ln.value,
                            "threshold": ln.threshold,
                            "passed": ln.passed,
                            "explanation": ln.sentence,
                            **({"finding": ln.finding} if ln.finding else {}),
                        }
                        for ln in lines
                    },
                    **{k: getattr(card, k)[i] for k in ("weight_variance", "log_slope", "chi1", "correlation")},
                },
            }
        )
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
    return doc


def _csv_table(args, names, grid, results, classes) -> str:
    """``signature.csv``: one row per (activation, sigma) of the grid and the card's sigma."""
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
            writer.writerow(
                [
                    name,
                    repr(float(sigma_all[j])),
                    repr(float(args.mu)),
                    *(repr(float(getattr(sig, f)[j])) for f in jaxsig.FIELDS),
                    *(repr(float(getattr(aux, f)[j])) for f in aux_cols),
                    cls.growth,
                ]
            )
    return buf.getvalue()


def _markdown(
    args, names, grid, card, figures, elapsed, command, dtype, sig_table, class_table, card_table
) -> list[str]:
    """The lines of ``report.md``."""
    md = [
        "# Integral signatures of activation functions",
        "",
        f"Generated by `{command}` with jaxsig {jaxsig.__version__} (JAX {jax.__version__}, {dtype}) "
        f"in {elapsed:.1f} s. Pre-activations are `X = mu + sigma Z`, `Z ~ N(0, 1)`, with mu = "
        f"{fmt(args.mu)}; the sigma grid has {grid.size} log-spaced points in "
        f"[{fmt(grid[0])}, {fmt(grid[-1])}]. Definitions: `docs/spec.md`; data: `signature.json`, "
        "`signature.csv`.",
        "",
        f"## Signature at sigma = {fmt(args.sigma)}",
        "",
        render(*sig_table, "markdown", "l"),
        "",
        "`inf`: the component diverges; `undefined`: its defining limit does not exist.",
        "",
        "## Growth class and shape",
        "",
        "A0: bounded; A1: unbounded, at most linear growth; A>1: superlinear. Kinks are the "
        "points where phi' jumps; a function with a cusp (phi' unbounded) is not smooth.",
        "",
        render(*class_table, "markdown", "lllllllll"),
        "",
        f"## Design-principle report card at sigma = {fmt(args.sigma)}",
        "",
        "Principles of the specification (docs/spec.md), with q = sigma^2 and sb^2 = "
        f"{fmt(args.bias_variance)}: (1) contraction, (2) variance management (V'(q*) is the "
        "slope of the variance map at the fixed point q that the weight variance sW^2 = "
        "(q - sb^2)/m2 maintains), (3) bias drift, (4) kernel conditioning, (5) tail "
        "compensation. Threshold on each column.",
        "",
        render(*card_table, "markdown", "l"),
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
            f"g2 against tv at sigma = {fmt(args.sigma)}, with the principle thresholds (bars: "
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
            md.append(f"- ({ln.number}) {ln.title}, `{ln.rule}`: {fmt(ln.value, 4)}, {verdict}; {ln.sentence}")
        md.append("")
    findings = [(info, taxonomy.FINDINGS[k]) for k, info in taxonomy.PRINCIPLES.items() if k in taxonomy.FINDINGS]
    if findings:
        md += ["## What training measured about the principles", ""]
        md += [f"- ({info.number}) {info.title}: {text}" for info, text in findings] + [""]
    return md
