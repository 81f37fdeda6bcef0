"""A full disk however torch reports it, folders the permissions deny, and a W&B that cannot start: each ends in
one sentence (or one line and the run goes on), and a run that trained still leaves its summary.json.

No real network and no real full disk: the save is made to fail as torch fails, ``shutil.disk_usage`` says what
the disk would, the access checks are made to fail as they would for a user without the permission (these
tests run as root, whom ``chmod`` does not stop), and W&B talks to servers and proxies on 127.0.0.1.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import threading
from pathlib import Path

import pytest
import torch

from tests.test_faults import CONFIG, NO_WANDB, TINY, fit
from wide_lightning import files, loggers
from wide_lightning.cli import main
from wide_lightning.data.base import DATA_ENV
from wide_lightning.errors import DEBUG_ENV
from wide_lightning.files import AtomicCheckpointIO, DiskFull, NoAccess, SpaceReserve
from wide_lightning.loggers import REACH_TIMEOUT_ENV, WandbLogger


@pytest.fixture(autouse=True)
def no_wandb_state_leaks():
    """wandb keeps a process-wide singleton (its settings, a key it was given) and writes variables of its own;
    a later test in the same worker must find neither, or it starts online."""
    saved = dict(os.environ)
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish(exit_code=1)
    wandb.teardown()
    os.environ.clear()
    os.environ.update(saved)
    # the service torn down above may be one an earlier test started (its socket named in WANDB_SERVICE)
    os.environ.pop("WANDB_SERVICE", None)

#: What torch's zip writer raises when the disk fills under ``torch.save`` (not an OSError, no ENOSPC).
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 422464 vs 422356"


def _chmod_denies() -> bool:
    """Whether a folder's mode stops this process (not root's, or root's without CAP_DAC_OVERRIDE)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o555)
        try:
            Path(folder, "probe").touch()
        except PermissionError:
            return True
        finally:
            os.chmod(folder, 0o755)
    return False


CHMOD_IGNORED = not _chmod_denies()
ROOT_IGNORES_MODES = "runs as root, whom chmod does not deny; the sentence is tested with a simulated PermissionError"


@pytest.fixture()
def data_env(fake_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    return fake_data_dir


def disk_with(free: int):
    """A ``shutil.disk_usage`` that reports ``free`` bytes free."""
    return lambda path: shutil._ntuple_diskusage(10**12, 10**12 - free, free)


def run_main(capsys, *args: str, root: str = "runs/faulty") -> tuple[int, list[str]]:
    """``wide-lightning fit`` on the tiny config into the run folder ``<root>/r``: its exit status and its stderr's lines."""
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", CONFIG, *TINY, "--trainer.max_epochs=1", f"--trainer.default_root_dir={root}",
              "--run_name=r", *args])
    return exited.value.code, capsys.readouterr().err.strip().splitlines()


def leftovers(root: str) -> list[str]:
    """Partial files and kept room left in ``root``: none after any end."""
    return [p.name for p in Path(root).rglob("*") if ".partial-" in p.name or ".space-" in p.name]


# -- a full disk, however torch says so --------------------------------------------------------------------


def _torch_short_write(nbytes: int, message: str = TORCH_FULL):
    def save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"\0" * nbytes)
        raise RuntimeError(message)
    return save


def test_torchs_unexpected_pos_is_a_full_disk_named_with_the_space_needed_and_free(tmp_path, monkeypatch):
    monkeypatch.setattr(files.torch, "save", _torch_short_write(1000))
    monkeypatch.setattr(shutil, "disk_usage", disk_with(1200))
    with pytest.raises(DiskFull) as full:
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1000, 1000)}}, tmp_path / "epoch001.ckpt")
    assert str(full.value) == (f"no space left on the disk of {tmp_path} for epoch001.ckpt: it needs about 3.8 MiB "
                               f"with 1.2 KiB free; free some space (or write elsewhere) and run again. The partial "
                               f"file was removed.")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [RuntimeError("[enforce fail at inline_container.cc:589] . PytorchStreamWriter "
                                                "failed writing file data/3: file write failed"),
                                   OSError(errno.EDQUOT, "Disk quota exceeded"),
                                   OSError(errno.EIO, "Input/output error")])
def test_a_failed_write_is_a_full_disk_by_its_words_or_by_the_free_space(tmp_path, monkeypatch, error):
    def save(obj, path, *args, **kwargs):
        raise error
    monkeypatch.setattr(files.torch, "save", save)
    monkeypatch.setattr(shutil, "disk_usage", disk_with(0))  # what disk_usage says of a full disk
    with pytest.raises(DiskFull, match=rf"^no space left on the disk of {re.escape(str(tmp_path))} for a.ckpt: it "
                                       rf"needs about 4.0 KiB with 0 bytes free[ ;]"):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(1024)}, tmp_path / "a.ckpt")


@pytest.mark.parametrize(("error", "free", "why"), [
    (errno.EDQUOT, 0, "with 0 bytes free (your disk quota there is used up)"),
    (errno.ENOSPC, 50 * 2**30, "with 50.0 GiB free (the disk has room: your quota there is probably used up)")])
def test_a_quota_is_named(tmp_path, monkeypatch, error, free, why):
    def save(obj, path, *args, **kwargs):
        raise OSError(error, os.strerror(error))
    monkeypatch.setattr(files.torch, "save", save)
    monkeypatch.setattr(shutil, "disk_usage", disk_with(free))
    with pytest.raises(DiskFull, match=rf"it needs about 4.0 KiB {re.escape(why)}; free some space"):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(1024)}, tmp_path / "a.ckpt")


def test_a_failure_that_is_not_the_disk_is_left_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setattr(files.torch, "save", _torch_short_write(10, "Can't pickle local object"))
    monkeypatch.setattr(shutil, "disk_usage", disk_with(10**11))
    with pytest.raises(RuntimeError, match="^Can't pickle local object$"):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(4)}, tmp_path / "a.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_the_partial_file_is_truncated_so_its_space_is_free_even_while_torch_holds_it_open(tmp_path, monkeypatch):
    held = []

    def save(obj, path, *args, **kwargs):
        handle = open(path, "wb")  # as torch's writer does: still open when its exception is raised
        handle.write(b"\0" * 100_000)
        handle.flush()
        held.append(handle)
        raise RuntimeError(TORCH_FULL)
    monkeypatch.setattr(files.torch, "save", save)
    with pytest.raises(DiskFull):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(4)}, tmp_path / "a.ckpt")
    assert os.fstat(held[0].fileno()).st_size == 0 and os.fstat(held[0].fileno()).st_nlink == 0
    held[0].close()


def test_a_full_disk_in_a_checkpoint_ends_in_one_sentence_and_a_failed_summary(data_env, monkeypatch, capsys):
    full, room_during_training = [], []

    def save(obj, path, *args, **kwargs):
        room_during_training.extend(p.stat().st_size for p in Path("runs/faulty/r").glob(".summary.json.space-*"))
        Path(path).write_bytes(b"\0" * 100)
        full.append(True)
        raise RuntimeError(TORCH_FULL)
    monkeypatch.setattr(files.torch, "save", save)
    # full from the first failed save on; the summary then goes into the room kept for it
    monkeypatch.setattr(shutil, "disk_usage", lambda path: disk_with(2048 if full else 10**11)(path))
    status, err = run_main(capsys, *NO_WANDB)
    assert status == 2
    assert re.fullmatch(r"no space left on the disk of \S*runs/faulty/r/checkpoints for epoch000-val_acc[\d.]+\.ckpt: it "
                        r"needs about [\d.]+ KiB with 2.0 KiB free; free some space \(or write elsewhere\) and run "
                        r"again. The partial file was removed.", err[-1]), err[-1]
    assert not any(line.startswith("Traceback") for line in err)
    assert room_during_training == [64 * 1024]  # kept from the start of fit
    summary = json.loads(Path("runs/faulty/r/summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == f"DiskFull: {err[-1]}"
    assert summary["checkpoints"] == {"best": "", "last": ""}  # the file the failed save named is not there
    assert leftovers("runs/faulty") == [] and list(Path("runs/faulty/r/checkpoints").glob("*ckpt*")) == []


def test_a_disk_without_room_for_the_summary_is_refused_before_training(data_env, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", disk_with(10 * 1024))
    status, err = run_main(capsys, *NO_WANDB, root="runs/full")
    assert status == 2
    assert err[-1] == ("no space left on the disk of runs/full/r for summary.json: it needs 64.0 KiB with 10.0 KiB free; "
                       "free some space (or write elsewhere) and run again.")
    assert not list(Path("runs/full").rglob("summary*.json")) and not list(Path("runs/full").rglob("checkpoints"))


def test_the_room_kept_is_real_data_and_leaves_nothing_behind(tmp_path):
    reserve = SpaceReserve(tmp_path, "summary.json", 64 * 1024)
    stale = tmp_path / f".summary.json.space-{socket.gethostname()}-999999999"  # a killed run's (no such pid)
    stale.write_bytes(b"x")
    reserve.keep()
    assert reserve.path.stat().st_size == 64 * 1024 and reserve.path.stat().st_blocks * 512 >= 64 * 1024
    assert not stale.exists()
    reserve.release()
    reserve.release()  # twice is fine (the record's end, then at exit)
    assert list(tmp_path.iterdir()) == []


# -- folders the permissions deny -----------------------------------------------------------------------


def _denied(path: Path, err: int = errno.EACCES):
    """A file-system call that fails for ``path`` as it would for a user without the permission."""
    def call(folder, *args, **kwargs):
        raise PermissionError(err, os.strerror(err), str(folder))
    return call


def test_an_unreadable_data_folder_is_one_sentence_before_training(data_env, monkeypatch, capsys):
    real = files._probe_read
    monkeypatch.setattr(files, "_probe_read",
                        lambda folder: _denied(folder)(folder) if Path(folder) == data_env else real(folder))
    status, err = run_main(capsys, *NO_WANDB)
    assert status == 2
    assert err[-1] == (f"cannot read the data folder {data_env} (Permission denied); give yourself read access "
                       f"(chmod -R u+rX {data_env}) or point --data.data_dir=DIR (or {DATA_ENV}=DIR) at a readable "
                       f"copy.")
    assert not Path("runs/faulty/summary.json").exists()


def test_a_denied_file_or_sub_folder_of_the_data_is_one_sentence(data_env, monkeypatch, capsys):
    # the data folder itself is readable; what is inside is not: it used to end in a PermissionError traceback
    raw = data_env / "MNIST" / "raw"
    is_file, read_bytes = Path.is_file, Path.read_bytes

    def lookup(path):
        if path.parent == raw:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return is_file(path)
    monkeypatch.setattr(Path, "is_file", lookup)
    status, err = run_main(capsys, *NO_WANDB)
    assert status == 2
    assert err[-1] == (f"cannot read {raw} (Permission denied); give yourself read access (chmod -R u+rX {raw}) or point "
                       f"--data.data_dir=DIR (or {DATA_ENV}=DIR) at a readable copy.")
    monkeypatch.setattr(Path, "is_file", is_file)
    images = raw / "train-images-idx3-ubyte"  # the fake data is not compressed

    def read(path):
        if path == images:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return read_bytes(path)
    monkeypatch.setattr(Path, "read_bytes", read)
    status, err = run_main(capsys, *NO_WANDB, root="runs/file")
    assert status == 2 and err[-1].startswith(f"cannot read {images} (Permission denied); give yourself read access")


@pytest.mark.parametrize("logger", [NO_WANDB, []], ids=["no-logger", "wandb"])
def test_a_read_only_run_folder_is_one_sentence_that_says_there_is_no_summary(data_env, monkeypatch, capsys, logger):
    Path("runs/readonly").mkdir(parents=True)
    real = files._probe_write
    readonly = Path("runs/readonly/r")
    monkeypatch.setattr(files, "_probe_write", lambda folder: _denied(folder)(folder) if Path(folder) == readonly
                        else real(folder))
    status, err = run_main(capsys, *logger, root="runs/readonly")
    assert status == 2
    assert err[-1] == ("cannot write in the run folder runs/readonly/r (Permission denied); make it writable (chmod "
                       "u+w runs/readonly/r) or give another folder with --trainer.default_root_dir=DIR; nothing was "
                       "trained, and no summary.json was written (it goes in that folder).")
    assert [p for p in Path("runs/readonly").rglob("*") if p.is_file()] == []


def test_a_run_folder_that_cannot_be_created_names_the_folder_in_the_way(data_env, monkeypatch, capsys):
    def create(folder):
        if Path(folder) == Path("runs/ro/run/r"):
            raise PermissionError(errno.EACCES, "Permission denied", "runs/ro/run/r")
        folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(files, "_create", create)
    status, err = run_main(capsys, *NO_WANDB, root="runs/ro/run")
    assert status == 2
    assert err[-1] == ("cannot create the run folder runs/ro/run/r (Permission denied in runs/ro/run); make runs/ro/run "
                       "writable (chmod u+w runs/ro/run) or give another folder with --trainer.default_root_dir=DIR; nothing was "
                       "trained, and no summary.json was written (it goes in that folder).")


def test_a_read_only_file_system_is_named_with_the_only_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_probe_write", _denied(tmp_path, errno.EROFS))
    with pytest.raises(NoAccess) as refused:
        files.check_writable_folder(tmp_path, "the run folder", "--trainer.default_root_dir")
    assert str(refused.value) == (f"cannot write in the run folder {tmp_path} (Read-only file system); give another "
                                  f"folder with --trainer.default_root_dir=DIR.")
    assert isinstance(refused.value, PermissionError)


def test_a_checkpoint_folder_denied_during_training_fails_the_run_in_one_sentence(data_env, monkeypatch, capsys):
    def save(obj, path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(files.torch, "save", save)
    status, err = run_main(capsys, *NO_WANDB)
    assert status == 2
    assert re.fullmatch(r"cannot write epoch000-val_acc[\d.]+\.ckpt in (\S*runs/faulty/r/checkpoints) \(Permission "
                        r"denied\); make the folder writable \(chmod u\+w \1\) or write elsewhere, and run again.",
                        err[-1]), err[-1]
    summary = json.loads(Path("runs/faulty/r/summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == f"NoAccess: {err[-1]}"


@pytest.mark.skipif(CHMOD_IGNORED, reason=ROOT_IGNORES_MODES)
def test_an_unreadable_data_folder_for_real(data_env, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    shutil.copytree(data_env, data)
    data.chmod(0)
    try:
        status, err = run_main(capsys, *NO_WANDB, f"--data.init_args.data_dir={data}")
    finally:
        data.chmod(0o755)
    assert status == 2 and err[-1].startswith(f"cannot read the data folder {data} (Permission denied)")


@pytest.mark.skipif(CHMOD_IGNORED, reason=ROOT_IGNORES_MODES)
def test_a_read_only_run_folder_for_real(data_env, capsys):
    Path("runs/readonly").mkdir(parents=True)
    Path("runs/readonly").chmod(0o555)
    try:
        status, err = run_main(capsys, root="runs/readonly")
    finally:
        Path("runs/readonly").chmod(0o755)
    assert status == 2 and err[-1].startswith("cannot create the run folder runs/readonly/r (Permission denied in "
                                              "runs/readonly)")


# -- W&B that cannot start ------------------------------------------------------------------------------


class LocalServer:
    """A TCP server on 127.0.0.1 answering each connection with ``reply`` (``None``: ``200 Connection
    established`` and then silence, a proxy that accepts a tunnel and forwards nothing)."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply, self.requests = reply, []
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.open.append(connection)
            self.requests.append(connection.recv(65536).split(b"\r\n", 1)[0].decode())
            connection.sendall(self.reply or b"HTTP/1.1 200 Connection established\r\n\r\n")
            if self.reply:
                connection.close()

    def close(self) -> None:
        self.socket.close()
        for connection in self.open:
            connection.close()


@pytest.fixture()
def online(monkeypatch, tmp_path):
    """Credentials for W&B and no WANDB_MODE: a run would go online. No proxy or server of the machine's."""
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy", "WANDB_BASE_URL", "WANDB_HTTPS_PROXY", "WANDB_HTTP_PROXY", "WANDB_INIT_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    servers: list[LocalServer] = []
    yield servers
    for server in servers:
        server.close()


def test_the_check_reaches_wandbs_own_base_url_through_the_proxy_requests_would_take(online, monkeypatch):
    assert loggers.wandb_target().base_url == loggers.wandb_settings().base_url  # the installed wandb's default
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.test")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    assert loggers.wandb_target() == loggers.WandbTarget("https://wandb.example.test", "http://proxy.example.test:3128",
                                                         True)
    monkeypatch.setenv("NO_PROXY", "wandb.example.test")
    assert loggers.wandb_target().proxy is None
    monkeypatch.setenv("WANDB_HTTPS_PROXY", "http://wandb-proxy.example.test:8080")  # wandb's own setting wins
    assert loggers.wandb_target().proxy == "http://wandb-proxy.example.test:8080"


def test_credentials_are_looked_up_for_wandbs_server(online, monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.test")
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    netrc.chmod(0o600)
    assert not loggers.wandb_credentials_available()  # a login for another server
    netrc.write_text("machine wandb.example.test\n  login user\n  password " + "y" * 40 + "\n")
    assert loggers.wandb_credentials_available()


def test_a_proxy_that_answers_but_does_not_forward_sends_the_run_offline(online, monkeypatch, capsys, tmp_path):
    proxy = LocalServer(reply=None)  # accepts CONNECT, then silence: the old check (a TCP connect) passed here
    online.append(proxy)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.test")
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv(REACH_TIMEOUT_ENV, "1")
    logger = WandbLogger(save_dir=str(tmp_path / "run"))
    assert logger._offline
    assert [r.rsplit(" ", 1)[0] for r in proxy.requests] == ["CONNECT wandb.example.test:443"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"W&B: the server cannot be reached (wandb.example.test:443 through the proxy "
                   f"{proxy.url.removeprefix('http://')}: no answer within 1 s); logging offline instead. Upload later "
                   f"with `wandb sync {tmp_path / 'run' / 'wandb'}/offline-run-*` ({REACH_TIMEOUT_ENV} sets the wait)."]


def test_a_proxy_that_refuses_the_tunnel_is_named(online, monkeypatch):
    proxy = LocalServer(reply=b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
    online.append(proxy)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    reason = loggers.wandb_server_unreachable(2)
    assert reason.endswith(f"through the proxy {proxy.url.removeprefix('http://')}: the proxy answered 502 Bad Gateway")


def test_any_answer_of_the_server_counts_as_reachable(online, monkeypatch):
    server = LocalServer(reply=b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
    online.append(server)
    monkeypatch.setenv("WANDB_BASE_URL", server.url)
    assert loggers.wandb_server_unreachable(2) is None
    assert server.requests == ["GET / HTTP/1.1"]


def _failing_online_init(monkeypatch, error: Exception) -> list[dict]:
    """``wandb.init`` failing online with ``error``, starting offline runs for real; returns the calls' arguments."""
    import wandb

    calls, real = [], wandb.init

    def init(**kwargs):
        calls.append(kwargs)
        if kwargs.get("mode") != "offline":
            raise error
        return real(**kwargs)
    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(loggers, "wandb_server_unreachable", lambda timeout: None)  # the server answered the check
    return calls


def test_a_wandb_init_that_fails_goes_offline_in_one_line_within_a_bound(online, monkeypatch, capsys, tmp_path):
    import wandb
    from wandb.errors import CommError

    timed_out = ("Timed out initializing run: POST https://wandb.example.test/graphql giving up after 1 attempt(s): "
                 "context deadline exceeded")
    calls = _failing_online_init(monkeypatch, CommError(timed_out))
    logger = WandbLogger(save_dir=str(tmp_path / "run"))
    assert not logger._offline
    try:
        run = logger.experiment
        assert logger._offline and run.settings.mode == "offline" and wandb.run is run
    finally:
        wandb.finish()
    assert calls[0]["settings"] == {"init_timeout": loggers.DEFAULT_INIT_TIMEOUT}  # wandb's own default is 90 s
    assert calls[1]["mode"] == "offline"
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("W&B:")]
    assert err == [f"W&B: the online run could not start (CommError: {timed_out}); logging offline instead. Upload "
                   f"later with `wandb sync {tmp_path / 'run' / 'wandb'}/offline-run-*`."]


def test_an_init_timeout_given_by_the_person_is_kept(online, monkeypatch):
    import wandb

    monkeypatch.setattr(loggers, "wandb_server_unreachable", lambda timeout: None)

    assert WandbLogger(settings={"init_timeout": 300})._wandb_init["settings"] == {"init_timeout": 300}
    assert WandbLogger(settings=wandb.Settings(init_timeout=300))._wandb_init["settings"].init_timeout == 300
    assert WandbLogger(settings={"console": "off"})._wandb_init["settings"] == {"console": "off", "init_timeout": 30.0}
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "120")
    assert WandbLogger()._wandb_init.get("settings") is None  # wandb reads it itself


def test_a_fit_whose_wandb_cannot_start_trains_offline_and_says_so_once(data_env, online, monkeypatch, capsys):
    from wandb.errors import AuthenticationError

    _failing_online_init(monkeypatch, AuthenticationError("API key verification failed for host https://wandb.example."
                                                          "test: invalid API key"))
    summary = fit(epochs=1, root="runs/wandb_down")
    assert summary["status"] == "finished"
    assert summary["wandb"]["id"] and summary["wandb"]["url"] is None  # an offline run, for `wandb sync`
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("W&B:")]
    assert len(lines) == 1 and lines[0].startswith("W&B: the online run could not start (AuthenticationError: API key "
                                                   "verification failed")
