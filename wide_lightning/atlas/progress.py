"""What a long atlas shows while it works: a bar for each long stage where a person watches, nothing more in a log.

An atlas on a CPU spends minutes collecting activations, laying them out and optimizing icons. Where a person
watches (standard error is a terminal and the ``CI`` variable is not set), each long stage draws a tqdm bar on
standard error, as Lightning's own ``TQDMProgressBar`` does (``dynamic_ncols``, ``smoothing=0``, left on the
screen when done, so that what each stage took stays visible):

* collecting the activations: batches;
* the layout: UMAP reports no progress of its own (its ``verbose`` prints a dozen timestamped lines), so a
  spinner with the time elapsed (:meth:`Progress.spinner`);
* the icons and the neuron icons: optimization steps, with the mean objective of the last step's icons;
* the judge: its parts (the icons' nearest training images, the typical distance, the network's classes, each
  read-out, the neuron icons, the exemplars).

In CI, or when standard error is a file or a pipe, nothing is drawn: the one line per stage that the command
and the callback print (``atlas: laying out ...``) is all a log gets. The callback also draws nothing when the
trainer has no progress bar (``enable_progress_bar=False``) or on a rank other than 0.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TextIO

#: The variable CI services set (GitHub Actions, GitLab, Travis...): any value but empty, ``0`` or ``false``.
CI_ENV = "CI"
#: The size of a terminal that does not report its own.
FALLBACK_COLUMNS, FALLBACK_ROWS = 100, 24
#: How often the spinner turns, in seconds.
SPIN_SECONDS = 0.25


def in_ci() -> bool:
    """``CI`` is set (to anything but empty, ``0`` or ``false``)."""
    return os.environ.get(CI_ENV, "").strip().lower() not in ("", "0", "false", "no")


def draws_progress(stream: TextIO | None = None) -> bool:
    """Whether bars are drawn on ``stream`` (default: standard error): a terminal, outside CI."""
    stream = sys.stderr if stream is None else stream
    if in_ci() or stream is None:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


class Progress:
    """Bars for the atlas's long stages on ``file`` (default: standard error), drawn only if ``enabled`` and
    :func:`draws_progress` (a terminal, outside CI).

    ``Progress(False)`` (or ``Progress.off()``) draws nothing: what the pipeline uses when it is given none.
    """

    def __init__(self, enabled: bool = True, file: TextIO | None = None) -> None:
        self.file = sys.stderr if file is None else file
        self.enabled = bool(enabled) and draws_progress(self.file)

    @classmethod
    def off(cls) -> "Progress":
        return cls(False)

    def _tqdm(self, **options: Any) -> Any:
        from tqdm import tqdm

        try:
            size = os.get_terminal_size(self.file.fileno())
        except (AttributeError, OSError, ValueError):
            size = os.terminal_size((0, 0))
        # tqdm hides every bar on a terminal that reports no size (a pseudo-terminal nobody sized): give it one
        shape = {"dynamic_ncols": True} if min(size) > 0 else {"ncols": FALLBACK_COLUMNS, "nrows": FALLBACK_ROWS}
        return tqdm(file=self.file, smoothing=0, leave=True, **shape, **options)

    @contextmanager
    def bar(self, desc: str, unit: str = "it", total: int | None = None) -> Iterator[Callable[..., None]]:
        """A bar moved by the function it gives, ``tick(done, total, **postfix)``: ``done`` of ``total`` units,
        and values shown after the rate (``objective=0.52``). It appears at once if ``total`` is given, else at
        the first tick."""
        if not self.enabled:
            yield _nothing
            return
        state: dict[str, Any] = {}
        if total is not None:
            state["bar"] = self._tqdm(desc=desc, total=total, unit=unit)

        def tick(done: int, total: int, **postfix: Any) -> None:
            bar = state.get("bar")
            if bar is None:
                bar = state["bar"] = self._tqdm(desc=desc, total=total, unit=unit)
            elif bar.total != total:
                bar.total = total
            if postfix:
                bar.set_postfix(postfix, refresh=False)
            bar.update(done - bar.n)

        try:
            yield tick
        finally:
            if "bar" in state:
                state["bar"].close()

    @contextmanager
    def spinner(self, desc: str) -> Iterator[None]:
        """A turning line with the time elapsed, for work that reports no progress of its own (UMAP)."""
        if not self.enabled:
            yield
            return
        line = self._tqdm(desc=desc, total=None, bar_format="{desc} [{elapsed}]")
        stop = threading.Event()

        def turn() -> None:
            for frame in itertools.cycle("|/-\\"):
                if stop.wait(SPIN_SECONDS):
                    return
                line.set_description_str(f"{desc} {frame}", refresh=True)

        thread = threading.Thread(target=turn, name="atlas-spinner", daemon=True)
        thread.start()
        finished = False
        try:
            yield
            finished = True
        finally:
            stop.set()
            thread.join()
            line.set_description_str(f"{desc} {'done' if finished else 'stopped'}", refresh=False)
            line.close()
