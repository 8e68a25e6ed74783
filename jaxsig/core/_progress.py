"""One progress reporter for every long-running entry point (batches, design, CLI).

``with progress(total, enabled, desc) as advance: ... advance(label, n)`` shows a
rich progress bar on a terminal when rich is installed (``pip install
'jaxsig[cli]'``), and otherwise one line per step on stderr; nothing at all when
``enabled`` is false.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Iterator

__all__ = ["progress"]


@contextlib.contextmanager
def progress(total: int, enabled: bool, desc: str) -> Iterator[Callable[..., None]]:
    """Report progress over ``total`` units.

    Yields ``advance(label: str = "", n: int = 1)``, to be called after each
    ``n`` units are done; ``label`` describes the next piece of work.
    """
    if not enabled:
        yield lambda label="", n=1: None
        return
    if sys.stderr.isatty():
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
        except ImportError:
            pass
        else:
            cols = (
                TextColumn(f"{desc} " + "{task.description:<30}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*cols, console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("", total=total)
                yield lambda label="", n=1: bar.update(task, advance=n, description=label)
            return
    done, t0 = 0, time.perf_counter()

    def advance(label: str = "", n: int = 1) -> None:
        nonlocal done
        done += n
        what = f" {label}" if label else ""
        print(f"{desc}: [{done}/{total}]{what} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)

    yield advance
