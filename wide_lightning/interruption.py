"""SIGTERM and SIGINT: stop, keep what is finished, say how to go on, and exit 128 + the signal's number.

Schedulers send SIGTERM before they kill a job (SLURM pre-emption too), and people press Ctrl-C.
During training Lightning's own handler only sets a flag, and its loops raise ``SIGTERMException``
at the next batch; that exception is a ``SystemExit`` without a code, so on its own a terminated
run exits 0, as if it had finished. ``signals_recorded`` notes which signal arrived, so that the
commands can turn any of these ends into the same one: a summary marked ``interrupted``, the
resume command and exit status 128 + N. Outside the training loop (the atlas: minutes of rendering
that no Lightning loop checks), ``stop_promptly`` raises ``Interrupted`` as soon as the signal
arrives.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_received: list[int] = []


class Interrupted(BaseException):
    """A signal asked the process to stop. A ``BaseException``, as ``KeyboardInterrupt`` is, so that
    no ``except Exception`` on the way (e.g. the atlas callback's, which keeps the run alive when a
    figure fails) mistakes it for a failure to report and carry on from."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        return exit_code_of(self.signum)


#: What the run is doing now (``entered``), kept with each signal: where it arrived, for the record.
_stage = ["training"]
_received_during: list[str] = []


def entered(stage: str) -> None:
    """The run is now in ``stage`` (``training``, ``validation``, ``test``, ``probe``)."""
    _stage[0] = stage


def _record(signum: int) -> None:
    _received.append(signum)
    _received_during.append(_stage[0])


def received() -> int | None:
    """The signal that arrived while ``signals_recorded`` was active (the latest), or ``None``."""
    return _received[-1] if _received else None


def received_during() -> str | None:
    """What the run was doing when the latest signal arrived (a SIGTERM stops the loop only at the next training
    batch: this is where it arrived, not where the loop noticed)."""
    return _received_during[-1] if _received_during else None


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def signals_recorded() -> Iterator[None]:
    """Within: SIGTERM is recorded (Lightning's handler, composed with this one during ``fit``, stops the
    loop), SIGINT is recorded and raises ``KeyboardInterrupt`` as Python's default does."""
    if not _in_main_thread():
        yield
        return
    _received.clear()
    _received_during.clear()
    entered("training")

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        _record(signum)

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        _record(signum)
        raise KeyboardInterrupt

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_sigterm),
                signal.SIGINT: signal.signal(signal.SIGINT, on_sigint)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()  # what was recorded belongs to this block
        _received_during.clear()


@contextmanager
def stop_promptly() -> Iterator[None]:
    """Within: SIGTERM and SIGINT raise ``Interrupted`` at once (for work no training loop checks)."""
    if not _in_main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        _record(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        if _received:  # a signal that arrived just before (e.g. during the last epoch) stops the work too
            raise Interrupted(_received[-1])
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def exit_code_of(signum: int) -> int:
    """The shell's convention: 128 + the signal's number (143 for SIGTERM, 130 for SIGINT)."""
    return 128 + signum
