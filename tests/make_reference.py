"""Regenerate ``tests/data/mpmath_reference.json`` (mpmath only; no jaxsig import).

    python tests/make_reference.py

The test suite reads the table and also recomputes a subset of it live
(``test_reference_table_is_genuine``), so the file cannot drift from its source.
"""

import json
import pathlib
import sys
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import problems

SIGMAS = (0.05, 0.2, 1.0, 3.0, 20.0)
MUS = (-2.0, -0.6, 0.0, 1.3, 2.0)
OUT = pathlib.Path(__file__).parent / "data" / "mpmath_reference.json"


def _gauss(args):
    name, s, m = args
    return name, s, m, problems.gaussian_reference(name, s, m)


def main():
    jobs = [(n, s, m) for n in problems.PAPER_REFS for s in SIGMAS for m in MUS]
    with ProcessPoolExecutor() as ex:
        gauss = list(ex.map(_gauss, jobs))
        line = dict(zip(problems.PAPER_REFS, ex.map(problems.line_reference, problems.PAPER_REFS)))
    table = {
        "dps": problems.DPS,
        "gaussian": [dict(activation=n, sigma=s, mu=m, **v) for n, s, m, v in gauss],
        "line": line,
    }
    OUT.write_text(json.dumps(table, indent=1))
    print(f"wrote {OUT} ({len(gauss)} Gaussian rows)")


if __name__ == "__main__":
    main()
