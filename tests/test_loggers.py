import pytest

from wide_lightning import loggers
from wide_lightning.loggers import WandbLogger, wandb_credentials_available


@pytest.fixture()
def no_credentials(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.delenv("NETRC", raising=False)
    # these tests are about the guess, on a machine that can reach the server (CI has no network)
    monkeypatch.setattr(loggers, "wandb_server_unreachable", lambda timeout: None)
    return tmp_path


def test_without_credentials_runs_are_offline(no_credentials):
    assert not wandb_credentials_available()
    assert WandbLogger(save_dir=str(no_credentials / "runs"))._offline


def test_an_api_key_or_a_netrc_login_makes_runs_online(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert not WandbLogger()._offline
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = no_credentials / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    netrc.chmod(0o600)
    assert wandb_credentials_available() and not WandbLogger()._offline


def test_wandb_mode_overrides_the_guess(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert WandbLogger()._offline
    assert not WandbLogger(offline=False)._offline  # an explicit choice wins
