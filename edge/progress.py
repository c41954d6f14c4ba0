"""Progress display for the CLI's long loops: a tqdm bar when tqdm is installed, else a plain counter.

Only shown when stderr is a terminal, so logs and pipes stay clean. Library code takes the callback
(`on_progress(done, total)`) and never draws anything itself.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


@contextmanager
def progress(desc: str, stream: TextIO | None = None) -> Iterator[Callable[[int, int], None] | None]:
    """Yield an `on_progress(done, total)` callback drawing on `stream` (stderr), or None if not a terminal."""
    stream = stream or sys.stderr
    if not stream.isatty():
        yield None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is None:
        yield lambda done, total: print(f"\r{desc} {done}/{total}", end="", file=stream, flush=True)
        print(file=stream)
        return
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        bar = bar or tqdm(total=total, desc=desc, unit="img", file=stream, leave=False)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()
