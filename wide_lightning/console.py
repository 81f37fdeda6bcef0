"""What the commands print: the libraries' lines that say nothing about this run are left out.

Kept out, each for a reason a reader of the run's output would give:

* Lightning's tip to install ``litlogger`` (every run prints it; we log to W&B);
* the model summary's "0 Total Flops" (Lightning counts no FLOPs for these networks; 0 is wrong);
* torch's ``LeafSpec`` deprecation, raised inside Lightning's own code during the sanity check;
* LightningCLI's warning that it got both ``args`` and a command line: the commands pass it the
  command line they read themselves.

Everything else, warnings included, is printed as the libraries print it.
"""

from __future__ import annotations

import logging
import re
import warnings

#: Whole messages to drop, by the logger that emits them.
_DROPPED_MESSAGES = {"lightning.pytorch.utilities.rank_zero": ("litlogger",)}
#: Single lines to drop from a message.
_DROPPED_LINES = {"lightning.pytorch.callbacks.model_summary": re.compile(r"^\s*0\s+Total Flops\s*$")}


class _Quieter(logging.Filter):
    def __init__(self, messages: tuple[str, ...] = (), line: re.Pattern[str] | None = None) -> None:
        super().__init__()
        self.messages = messages
        self.line = line

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(text in message for text in self.messages):
            return False
        if self.line is not None:
            lines = message.split("\n")
            kept = [line for line in lines if not self.line.match(line)]
            if len(kept) != len(lines):
                record.msg, record.args = "\n".join(kept), ()
        return True


def quiet_library_noise() -> None:
    """Install the filters above (idempotent)."""
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    # our commands hand LightningCLI the command line they read (with nan/inf spelt for YAML)
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended to run from within Python")
    for name in set(_DROPPED_MESSAGES) | set(_DROPPED_LINES):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Quieter) for f in logger.filters):
            logger.addFilter(_Quieter(_DROPPED_MESSAGES.get(name, ()), _DROPPED_LINES.get(name)))
