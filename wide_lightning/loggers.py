"""Weights & Biases as the default logger, usable with no account and no network.

``WandbLogger`` goes online when the installed ``wandb`` has credentials for its server
(``WANDB_API_KEY``, a ``wandb login`` entry in the netrc file, an ``api_key`` in its settings) and
otherwise writes an offline run directory that ``wandb sync`` uploads later. ``WANDB_MODE``
(``online``, ``offline``, ``disabled``) overrides the guess. An online run first checks that the
server answers, the way ``wandb`` will connect to it: its base URL (``WANDB_BASE_URL``, its settings
files, else its default), through the proxy that ``wandb`` and ``requests`` would take
(``WANDB_HTTPS_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``...), with one HTTP request (5 s,
``WIDE_LIGHTNING_WANDB_TIMEOUT``). A proxy that accepts the connection but does not forward it fails
that request. ``wandb.init`` itself is bounded too (``init_timeout``, 30 s unless ``WANDB_INIT_TIMEOUT``
or the logger's ``settings`` say otherwise), and whatever makes it fail (a key the server refuses, a
timeout) makes the run log offline instead; either way the run says so in one line and trains.

``RunConfigSaver`` keeps each run's resolved config without the clash of Lightning's
``SaveConfigCallback`` with W&B: every W&B run shares ``save_dir``, so the stock callback's
``<save_dir>/config.yaml`` makes the second run fail (Lightning-AI/pytorch-lightning#7679, #14162).
"""

from __future__ import annotations

import netrc
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from wide_lightning.files import NoAccess, check_writable_folder, make_folder, write_text
from wide_lightning.run_folder import METRIC_SECTIONS

CONFIG_NAME = "lightning_config.yaml"  # W&B keeps its own config.yaml in the run's files
#: wandb's server before 0.2x made ``https://api.forge.coreweave.com`` the default (used when wandb says none).
FALLBACK_BASE_URL = "https://api.wandb.ai"


def wandb_settings() -> Any | None:
    """The settings the installed ``wandb`` will start a run with, as ``wandb.setup`` loads them: its settings
    files (``WANDB_CONFIG_DIR``/settings, ``./wandb/settings``), then the ``WANDB_*`` variables. ``None`` if
    this ``wandb`` cannot say (another version)."""
    try:
        import wandb

        settings = wandb.Settings()
        config_dir = os.environ.get("WANDB_CONFIG_DIR")
        settings.settings_system = str(Path(config_dir).expanduser() / "settings") if config_dir else \
            str(Path("~", ".config", "wandb", "settings").expanduser())
        settings.update_from_system_settings()
        settings.update_from_env_vars(dict(os.environ))
        return settings
    except Exception:  # noqa: BLE001 (a wandb without this API, invalid settings: fall back to the variables)
        return None


@dataclass(frozen=True)
class WandbTarget:
    """Where ``wandb`` will connect: its server's base URL, the proxy on the way (``None``: direct), and
    whether it has credentials for that server."""

    base_url: str
    proxy: str | None
    has_credentials: bool


def _setting(settings: Any, name: str) -> Any:
    return getattr(settings, name, None) if settings is not None else None


def _netrc_has(base_url: str) -> bool:
    """An API key for ``base_url`` in the netrc file ``wandb`` reads (``$NETRC``, else ``~/.netrc``)."""
    try:
        from wandb.sdk.lib.wbauth import wbnetrc

        return wbnetrc.read_netrc_auth(host=base_url) is not None
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 (an entry wandb refuses: there are credentials; wandb.init will say)
        return True
    hosts = {urlparse(base_url).hostname, urlparse(FALLBACK_BASE_URL).hostname}
    try:
        table = netrc.netrc(os.environ.get("NETRC") or None)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any(host and table.authenticators(host) is not None for host in hosts)


def _proxy_for(url: str, settings: Any) -> str | None:
    """The proxy a request to ``url`` goes through: ``wandb``'s own setting, else the environment as ``requests``
    reads it (``HTTPS_PROXY``/``https_proxy``, ``ALL_PROXY``, ``NO_PROXY``)."""
    scheme = urlparse(url).scheme
    own = _setting(settings, "https_proxy" if scheme == "https" else "http_proxy")
    if own:
        return str(own)
    try:
        from requests.utils import get_environ_proxies, select_proxy

        return select_proxy(url, get_environ_proxies(url))
    except ImportError:
        return os.environ.get(f"{scheme}_proxy") or os.environ.get(f"{scheme.upper()}_PROXY") or None


def wandb_target() -> WandbTarget:
    """Where the installed ``wandb`` will connect, from its own settings (see ``wandb_settings``)."""
    settings = wandb_settings()
    base_url = str(_setting(settings, "base_url") or os.environ.get("WANDB_BASE_URL") or FALLBACK_BASE_URL)
    has_credentials = bool(_setting(settings, "api_key") or os.environ.get("WANDB_API_KEY")) or _netrc_has(base_url)
    return WandbTarget(base_url.rstrip("/"), _proxy_for(base_url, settings), has_credentials)


def wandb_credentials_available() -> bool:
    return wandb_target().has_credentials


#: How long a run waits for the W&B server before it logs offline instead (seconds; 0: do not check).
REACH_TIMEOUT_ENV = "WIDE_LIGHTNING_WANDB_TIMEOUT"
DEFAULT_REACH_TIMEOUT = 5.0
#: The bound on ``wandb.init`` (wandb's own default is 90 s), unless ``WANDB_INIT_TIMEOUT`` or ``settings`` set one.
DEFAULT_INIT_TIMEOUT = 30.0
#: What a proxy answers when it cannot reach the server (the server itself does not answer so).
_PROXY_FAILURES = {407, 502, 503, 504}


def _short(error: BaseException, limit: int = 160) -> str:
    """An error's message on one line, at most ``limit`` characters."""
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _network_reason(error: BaseException, timeout: float) -> str:
    """The gist of a failed request (``requests`` nests the cause in long reprs of urllib3's errors)."""
    text = " ".join(str(error).split())
    if match := re.search(r"Tunnel connection failed: (\d{3}[^'\")]*)", text):
        return f"the proxy answered {match.group(1).strip()}"
    if match := re.search(r"Failed to resolve '([^']+)'", text):
        return f"the name {match.group(1)} cannot be resolved"
    if "timed out" in text.lower() or type(error).__name__.endswith("Timeout"):
        return f"no answer within {timeout:g} s"
    if "SSL" in text or "certificate" in text.lower():
        return f"the TLS handshake failed ({_short(error, 100)})"
    if match := re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text):
        return match.group(1).strip()
    return _short(error)


def _verify() -> bool | str:
    """The certificates to trust, as ``requests`` (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) or OpenSSL
    (``SSL_CERT_FILE``, what ``wandb``'s service reads) are told; ``False`` if ``wandb`` is told not to verify."""
    if os.environ.get("WANDB_INSECURE_DISABLE_SSL", "").lower() in ("1", "true", "yes"):
        return False
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        if os.environ.get(name):
            return os.environ[name]
    return True


def _host_port(url: str) -> str:
    parsed = urlparse(url if "://" in url else f"http://{url}")
    return f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"


def wandb_server_unreachable(timeout: float) -> str | None:
    """Why the W&B server cannot be reached within ``timeout`` seconds the way ``wandb`` will connect to it
    (``wandb_target``: its base URL, through its proxy); ``None`` when it answers. One HTTP request: any
    answer of the server counts (even 401 or 404), none in time, a refused connection, a failed TLS handshake
    or a proxy's own failure (502, 407...) does not. Bounded by a thread, since a name lookup has no timeout."""
    target = wandb_target()
    where = _host_port(target.base_url) + (f" through the proxy {_host_port(target.proxy)}" if target.proxy else "")
    outcome: list[str | None] = []

    def ask() -> None:
        try:
            import requests
        except ImportError:  # pragma: no cover (wandb depends on requests)
            outcome.append(None)
            return
        try:
            proxies = {"http": target.proxy, "https": target.proxy} if target.proxy else {}
            with requests.Session() as session:
                # the proxy is chosen above as requests would; not trusting the environment beyond that keeps
                # requests from sending the netrc's W&B key along (it reads netrc logins when it trusts it)
                session.trust_env = False
                response = session.get(target.base_url, timeout=timeout, allow_redirects=False, stream=True,
                                       proxies=proxies, verify=_verify())
                response.close()
            if target.proxy and response.status_code in _PROXY_FAILURES:
                outcome.append(f"{where}: the proxy answered {response.status_code} {response.reason}")
            else:
                outcome.append(None)
        except Exception as error:  # noqa: BLE001 (any failure to get an answer is the reason)
            outcome.append(f"{where}: {_network_reason(error, timeout)}")

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{where}: no answer within {timeout:g} s"


def reach_timeout() -> float:
    value = os.environ.get(REACH_TIMEOUT_ENV, "")
    try:
        return float(value) if value else DEFAULT_REACH_TIMEOUT
    except ValueError:
        raise ValueError(f"{REACH_TIMEOUT_ENV}={value!r} is not a number of seconds; e.g. {REACH_TIMEOUT_ENV}=10 "
                         f"(0: do not check).") from None


def _bounded_init_settings(settings: Any) -> Any:
    """``wandb.init``'s ``settings`` with ``init_timeout`` bounded (``DEFAULT_INIT_TIMEOUT``) unless they, or
    ``WANDB_INIT_TIMEOUT``, set it."""
    if os.environ.get("WANDB_INIT_TIMEOUT"):
        return settings
    if settings is None:
        return {"init_timeout": DEFAULT_INIT_TIMEOUT}
    if isinstance(settings, dict):
        return {"init_timeout": DEFAULT_INIT_TIMEOUT, **settings}
    if "init_timeout" not in getattr(settings, "model_fields_set", {"init_timeout"}):
        settings = settings.model_copy()
        settings.init_timeout = DEFAULT_INIT_TIMEOUT
    return settings


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger`` with ``offline=None`` meaning: online if logged in, else offline; and online
    meaning: online if the server can be reached and ``wandb.init`` succeeds, else offline, said in one line.

    Args mirror Lightning's; ``save_dir=None`` is set by the CLI to the run's ``default_root_dir``.
    Extra keyword arguments go to ``wandb.init`` (e.g. ``group``, ``tags``, ``entity``, ``settings``).
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
        self._sync_folder = Path(save_dir or ".") / "wandb"
        if not offline and os.environ.get("WANDB_MODE", "").lower() != "disabled" and timeout > 0:
            # wandb.init would wait up to its init_timeout and then end the run with a CommError before any training
            reason = wandb_server_unreachable(timeout)
            if reason is not None:
                offline = True
                print(f"W&B: the server cannot be reached ({reason}); logging offline instead. Upload later with "
                      f"`wandb sync {self._sync_folder}/offline-run-*` ({REACH_TIMEOUT_ENV} sets the wait).",
                      file=sys.stderr)
        # the folder W&B writes into (the CLI's run folder unless save_dir is given), made here; one that cannot be
        # written is refused when the run starts (the run record refuses the run folder before that): raised from
        # here, the sentence would reach the person inside the parser's account of each type the option accepts
        self._folder_refused: NoAccess | None = None
        if save_dir is not None:
            try:
                check_writable_folder(save_dir, "the W&B folder", "--trainer.logger.init_args.save_dir",
                                      "; nothing was trained")
            except NoAccess as refused:
                self._folder_refused = refused
        if not offline:
            kwargs["settings"] = _bounded_init_settings(kwargs.get("settings"))
        super().__init__(name=name, save_dir=save_dir or ".", project=project, offline=offline,
                         log_model=log_model, id=id, **kwargs)
        if self._wandb_init.get("anonymous") is None:  # W&B warns that the setting does nothing, even for None
            self._wandb_init.pop("anonymous", None)

    @property
    def experiment(self) -> Any:
        """The W&B run, started on first use; an online start that fails (in at most ``init_timeout``) is made
        offline, in one line, so that the run trains and its logs can be uploaded later."""
        if self._experiment is None and self._folder_refused is not None:
            raise self._folder_refused
        if self._experiment is not None or self._offline or getattr(rank_zero_only, "rank", 0) != 0:
            return super().experiment
        try:
            return super().experiment
        except Exception as error:  # noqa: BLE001 (wandb.errors.CommError, its timeout, a refused key...)
            import wandb

            if wandb.run is not None:  # a half-started run would be reused by the offline start
                wandb.finish(exit_code=1)
            self._experiment = None
            print(f"W&B: the online run could not start ({type(error).__name__}: {_short(error)}); logging offline "
                  f"instead. Upload later with `wandb sync {self._sync_folder}/offline-run-*`.", file=sys.stderr)
            # offline by wandb.init's argument: Lightning's own switch (WANDB_MODE, set when ``_offline``) would
            # come after wandb read its settings, and wandb would warn that it ignores it
            self._wandb_init["mode"] = "offline"
            experiment = super().experiment
            self._offline = True
            return experiment


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
                run_dir.mkdir(parents=True, exist_ok=True)  # W&B's own folder: written as W&B writes its files
                (run_dir / CONFIG_NAME).write_text(text)
                run.config.update({"lightning_config": self.config.as_dict()}, allow_val_change=True)
            if not wandb_loggers:
                make_folder(log_dir, "the run folder", "--trainer.default_root_dir")
                write_text(unused_path(log_dir / self.config_filename), text)
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
            for section in METRIC_SECTIONS:  # a probe's target and head (strings) are settings
                flat.update({f"{section}/{k}": v for k, v in (record.get(section) or {}).items()
                             if isinstance(v, (int, float, str))})
            if hasattr(run, "summary"):
                run.summary.update(flat)
            import wandb

            if wandb.run is not None:
                wandb.finish(exit_code=0 if record.get("status") == "finished" else 1)
