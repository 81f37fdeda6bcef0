"""Weights & Biases as the default logger, usable with no account and no network.

``WandbLogger`` goes online when credentials exist (``WANDB_API_KEY`` or a ``wandb login`` entry in
``~/.netrc``) and otherwise writes an offline run directory that ``wandb sync`` uploads later.
``WANDB_MODE`` (``online``, ``offline``, ``disabled``) overrides the guess. An online run first
checks that the server answers (5 s, ``WIDE_LIGHTNING_WANDB_TIMEOUT``); if it does not, the run logs
offline and says so in one line, instead of waiting 90 s for ``wandb.init`` to fail before training.

``RunConfigSaver`` keeps each run's resolved config without the clash of Lightning's
``SaveConfigCallback`` with W&B: every W&B run shares ``save_dir``, so the stock callback's
``<save_dir>/config.yaml`` makes the second run fail (Lightning-AI/pytorch-lightning#7679, #14162).
"""

from __future__ import annotations

import netrc
import os
import socket
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

CONFIG_NAME = "lightning_config.yaml"  # W&B keeps its own config.yaml in the run's files


def wandb_credentials_available() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


#: How long a run waits for the W&B server before it logs offline instead (seconds; 0: do not check).
REACH_TIMEOUT_ENV = "WIDE_LIGHTNING_WANDB_TIMEOUT"
DEFAULT_REACH_TIMEOUT = 5.0


def wandb_server_unreachable(timeout: float) -> str | None:
    """Why the W&B server (or the HTTPS proxy in between) cannot be reached within ``timeout`` seconds;
    ``None`` when it can. The name lookup is bounded too (a thread), since ``socket`` timeouts are not."""
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    proxy = os.environ.get("HTTPS_PROXY" if url.scheme == "https" else "HTTP_PROXY") or \
        os.environ.get("https_proxy" if url.scheme == "https" else "http_proxy")
    target = urlparse(proxy) if proxy else url
    host, port = target.hostname or "", target.port or (443 if target.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{host}:{port}: {error.strerror or error}")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port}: no answer within {timeout:g} s"


def reach_timeout() -> float:
    value = os.environ.get(REACH_TIMEOUT_ENV, "")
    try:
        return float(value) if value else DEFAULT_REACH_TIMEOUT
    except ValueError:
        raise ValueError(f"{REACH_TIMEOUT_ENV}={value!r} is not a number of seconds; e.g. {REACH_TIMEOUT_ENV}=10 "
                         f"(0: do not check).") from None


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` with ``offline=None`` meaning: online if logged in, else offline.

    Args mirror Lightning's; ``save_dir=None`` is set by the CLI to the run's ``default_root_dir``.
    Extra keyword arguments go to ``wandb.init`` (e.g. ``group``, ``tags``, ``entity``).
    """

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | None = None,
        project: str = "wide_lightning",
        offline: bool | None = None,
        log_model: bool | str = False,
        id: str | None = None,
        **kwargs,
    ) -> None:
        if offline is None:
            mode = os.environ.get("WANDB_MODE", "").lower()
            offline = mode in ("offline", "dryrun") or (mode == "" and not wandb_credentials_available())
        timeout = reach_timeout()
        if not offline and os.environ.get("WANDB_MODE", "").lower() != "disabled" and timeout > 0:
            # wandb.init would wait up to 90 s and then end the run with a CommError before any training
            reason = wandb_server_unreachable(timeout)
            if reason is not None:
                offline = True
                folder = Path(save_dir or ".") / "wandb"
                print(f"W&B: the server cannot be reached ({reason}); logging offline instead. Upload later with "
                      f"`wandb sync {folder}/offline-run-*` ({REACH_TIMEOUT_ENV} sets the wait).", file=sys.stderr)
        if save_dir is not None:
            Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(name=name, save_dir=save_dir or ".", project=project, offline=offline,
                         log_model=log_model, id=id, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # W&B warns that the setting does nothing, even for None
            self._wandb_init.pop("anonymous", None)


def wandb_run_id(loggers: Any) -> str | None:
    """The id of the W&B run among ``loggers`` (``None`` without one, or before it started)."""
    for logger in loggers or []:
        if isinstance(logger, LightningWandbLogger) and getattr(logger, "_experiment", None) is not None:
            run_id = getattr(logger.experiment, "id", None)
            return run_id if isinstance(run_id, str) else None
    return None


def unused_path(path: Path) -> Path:
    """``path``, or ``<stem>-v1<suffix>``, ``-v2``... if taken: an earlier run's file is never overwritten."""
    candidate, version = path, 0
    while candidate.exists():
        version += 1
        candidate = path.with_name(f"{path.stem}-v{version}{path.suffix}")
    return candidate


class RunConfigSaver(SaveConfigCallback):
    """Saves the resolved config into the W&B run (file and run config), or beside the checkpoints.

    With a ``WandbLogger`` the YAML goes into the run's files (``lightning_config.yaml``, uploaded
    with the run) and into ``run.config``. Without one it goes to ``trainer.log_dir``, and an existing
    file is never overwritten (``config-v1.yaml``, ...), so runs sharing a folder keep theirs.
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        log_dir = Path(trainer.log_dir or trainer.default_root_dir)  # collective: every rank calls it
        if trainer.is_global_zero:
            text = self.parser.dump(self.config, skip_none=False)
            wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, LightningWandbLogger)]
            for logger in wandb_loggers:
                run = logger.experiment
                run_dir = Path(run.dir) if getattr(run, "dir", None) else log_dir
                run_dir.mkdir(parents=True, exist_ok=True)
                (run_dir / CONFIG_NAME).write_text(text)
                run.config.update({"lightning_config": self.config.as_dict()}, allow_val_change=True)
            if not wandb_loggers:
                log_dir.mkdir(parents=True, exist_ok=True)
                unused_path(log_dir / self.config_filename).write_text(text)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


def _of_inner(attribute: str) -> property:
    return property(lambda self: getattr(self.inner, attribute), doc=f"the wrapped logger's ``{attribute}``")


class PrefixedLogger(Logger):
    """Logs through another logger with every metric and hyper-parameter name prefixed.

    A transfer run logs its probe as ``probe/...`` into the base run's W&B run, so the base's
    ``test/acc`` and the probe's ``probe/test/acc_best`` sit side by side and neither overwrites the
    other. The wrapped logger is not finalized here: its owner closes it.
    """

    def __init__(self, logger: Logger, prefix: str) -> None:
        super().__init__()
        self.inner = logger
        self.prefix = prefix

    name = _of_inner("name")
    version = _of_inner("version")
    save_dir = _of_inner("save_dir")
    experiment = _of_inner("experiment")

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.inner.log_metrics({f"{self.prefix}{k}": v for k, v in metrics.items()}, step=step)

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        params = params if isinstance(params, dict) else vars(params)
        self.inner.log_hyperparams({f"{self.prefix}{k}": v for k, v in params.items()})

    def finalize(self, status: str) -> None:
        pass


def finish_wandb_run(trainer: Trainer, record: dict[str, Any]) -> None:
    """One fit is one W&B run: give it the run record's numbers, then finish it, so a later fit starts its own."""
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        if isinstance(logger, LightningWandbLogger):
            run = logger.experiment
            flat = {k: v for k, v in record.items() if isinstance(v, (int, float, str)) or v is None}
            for section in ("base", "probe"):
                flat.update({f"{section}/{k}": v for k, v in (record.get(section) or {}).items()
                             if isinstance(v, (int, float))})
            if hasattr(run, "summary"):
                run.summary.update(flat)
            import wandb

            if wandb.run is not None:
                wandb.finish(exit_code=0 if record.get("status") == "finished" else 1)
