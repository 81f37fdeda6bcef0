"""How far features moved (wide_lightning/movement.py): each measure on hand-made cases, and the callback in a
run: measured at the end of fit, in the summary, the same after a resume, with every parameterization."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.conftest import checkpoint_file
from tests.test_faults import NO_WANDB, data_env, fit  # noqa: F401 - data_env is a fixture
from wide_lightning.checkpoints import read_checkpoint
from wide_lightning.data import TranslatedMNIST
from wide_lightning.movement import (FeatureMovement, head_span_basis, linear_cka, movement_measures,
                                     projected_relative_movement, relative_movement, unchanged_patterns)

MOVEMENT = ["--trainer.callbacks+=wide_lightning.movement.FeatureMovement",
            "--trainer.callbacks.init_args.num_images=64"]


def test_an_unchanged_network_has_not_moved():
    h = torch.randn(50, 30).relu()
    head = torch.randn(4, 30)
    measures = movement_measures(h, h.clone(), head, head)
    assert measures["movement/relative"] == 0.0
    assert measures["movement/relative_trained_head_span"] == 0.0
    assert measures["movement/unchanged_patterns"] == 1.0
    assert measures["movement/cka"] == pytest.approx(1.0, abs=1e-12)


def test_a_known_displacement_gives_its_known_value():
    initial = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # norms 5 and 1
    trained = initial + torch.tensor([[0.0, 1.0], [0.0, 2.0]])  # moved by 1 and 2
    assert relative_movement(initial, trained) == pytest.approx((1 / 5 + 2 / 1) / 2)
    # 4 entries: [3,4] stays on, [1,0] -> [1,2] turns the second unit on
    assert unchanged_patterns(initial, trained) == pytest.approx(3 / 4)
    zero_row = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    assert relative_movement(zero_row, zero_row * 1.5) == pytest.approx(0.5)  # the zero row is left out


def test_the_projection_uses_the_heads_row_span():
    head = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]])  # rank 1: the span of e1
    basis = head_span_basis(head)
    assert basis.shape == (3, 1) and torch.allclose(basis.abs(), torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64))
    initial = torch.tensor([[2.0, 1.0, 1.0]])
    outside = initial + torch.tensor([[0.0, 5.0, -3.0]])  # moved only outside the span: no movement inside it
    along = initial + torch.tensor([[1.0, 0.0, 0.0]])  # moved by 1 along e1, whose initial coordinate is 2
    assert projected_relative_movement(initial, outside, basis) == 0.0
    assert projected_relative_movement(initial, along, basis) == pytest.approx(0.5)
    assert relative_movement(initial, outside) > 1.0
    assert head_span_basis(torch.zeros(3, 5)) is None  # a zero-initialized readout has no classifier subspace
    two = torch.cat([initial, 2 * initial])
    measures = movement_measures(two, two + torch.tensor([1.0, 0.0, 0.0]), head, torch.zeros(2, 3))
    assert "movement/relative_initial_head_span" not in measures  # a zero initial head: left out, not an error
    assert measures["movement/relative_trained_head_span"] == pytest.approx((1 / 2 + 1 / 4) / 2)


def test_cka_against_a_hand_computed_case_and_its_invariances():
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # centred, X^T X = 2 I
    y = torch.tensor([[1.0], [0.0], [-1.0], [0.0]])  # the first column only: Y^T X = [2, 0], Y^T Y = 2
    # ||Y^T X||^2 / (||X^T X|| ||Y^T Y||) = 4 / (2 sqrt(2) * 2)
    assert linear_cka(x, y) == pytest.approx(1 / math.sqrt(2))
    h = torch.randn(40, 7, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(7, 7, dtype=torch.float64))
    assert linear_cka(h, 3.0 * h @ rotation + 2.0) == pytest.approx(1.0)  # rotation, scale, shift
    wide = torch.randn(10, 300, dtype=torch.float64)  # the Gram form (D > N) and the feature form agree
    other = wide + torch.randn(10, 300, dtype=torch.float64)
    cross = (other - other.mean(0)).T @ (wide - wide.mean(0))
    feature_form = cross.pow(2).sum() / ((wide - wide.mean(0)).T @ (wide - wide.mean(0))).norm() / (
        (other - other.mean(0)).T @ (other - other.mean(0))).norm()
    assert linear_cka(wide, other) == pytest.approx(float(feature_form))


def test_a_layer_that_died_in_training_is_recorded_as_collapsed_not_a_crash():
    """A too-large learning rate can turn every unit off (lr 10 at width 64 did): CKA and the relative movement of
    a constant representation are undefined."""
    initial = torch.randn(20, 8).relu() + 0.1
    dead = torch.zeros(20, 8)
    measures = movement_measures(initial, dead, torch.randn(3, 8))
    assert math.isnan(measures["movement/cka"])
    assert measures["movement/relative"] == pytest.approx(1.0)  # every row moved by its whole norm
    assert measures["movement/collapsed"] == 1.0  # which the report leaves out of the fits, naming the run
    assert movement_measures(initial, initial + 1.0)["movement/collapsed"] == 0.0
    assert measures["movement/unchanged_patterns"] == 0.0  # every unit was on, every one is off
    assert math.isnan(movement_measures(dead, initial)["movement/relative"])  # dead at initialization


def test_bad_settings_are_refused_in_one_sentence():
    with pytest.raises(ValueError, match="num_images must be an integer >= 2, got 1"):
        FeatureMovement(num_images=1)
    with pytest.raises(ValueError, match="split must be 'train', 'val' or 'test', got 'valid'"):
        FeatureMovement(split="valid")
    with pytest.raises(ValueError, match=r"expected two \[N, D\] matrices"):
        relative_movement(torch.zeros(3, 2), torch.zeros(4, 2))


@pytest.mark.parametrize("parameterization", ["standard", "ntk", "mup"])
def test_a_run_records_how_far_its_features_moved(data_env, parameterization):
    summary = fit(*NO_WANDB, *MOVEMENT, f"--model.init_args.parameterization={parameterization}",
                  "--model.init_args.mup_base_width=16", epochs=1)
    base = summary["base"]
    assert summary["parameterization"] == parameterization
    assert 0 < base["movement/relative"] < 10
    assert 0 < base["movement/relative_trained_head_span"] and 0 < base["movement/relative_initial_head_span"]
    assert 0.5 < base["movement/unchanged_patterns"] < 1 and 0 < base["movement/cka"] < 1


def test_movement_measures_against_the_same_initial_features_after_a_resume(data_env):
    """μP included: its base shapes are rebuilt with the network, and h_0 comes back from the checkpoint."""
    mup = ["--model.init_args.parameterization=mup", "--model.init_args.mup_base_width=16"]
    straight = fit(*NO_WANDB, *MOVEMENT, *mup, epochs=2, root="runs/straight")
    fit(*NO_WANDB, *MOVEMENT, *mup, epochs=1, root="runs/split")
    resumed = fit(*NO_WANDB, *MOVEMENT, *mup, "--ckpt_path=last", epochs=2, root="runs/split")
    assert resumed["base"] == straight["base"]
    straight_state = torch.load(checkpoint_file(straight), weights_only=True)
    resumed_state = torch.load(checkpoint_file(resumed), weights_only=True)
    assert all(torch.equal(straight_state["state_dict"][k], v) for k, v in resumed_state["state_dict"].items())
    (key,) = [k for k in resumed_state["callbacks"] if k.startswith("FeatureMovement")]
    assert resumed_state["callbacks"][key]["initial"].shape == (64, 32)
    with pytest.raises(ValueError, match="the checkpoint measured movement with .*'num_images': 64.*'num_images': 32"):
        fit(*NO_WANDB, "--trainer.callbacks+=wide_lightning.movement.FeatureMovement",
            "--trainer.callbacks.init_args.num_images=32", *mup, "--ckpt_path=last", epochs=3, root="runs/split")



def test_the_untrained_probe_control_reads_the_features_the_run_started_from(data_env):
    """probe.control=untrained: a second probe, of the run's own network at initialization (its seed), so its frozen
    features are the h_0 that FeatureMovement measured the trained features against; the record says so."""
    summary = fit(*NO_WANDB, *MOVEMENT, "--seed_everything=7", "--probe.target=digit", "--probe.control=untrained",
                  "--probe.max_epochs=1", epochs=1)
    assert summary["kind"] == "transfer" and summary["weights"]["probe"]["reads"] == "last"
    assert summary["weights"]["probe_untrained"]["reads"] == "untrained"
    assert "initialized afresh" in summary["weights"]["probe_untrained"]["weights"]
    assert 0 <= summary["probe_untrained"]["test/acc_best"] <= 1 and "test/acc_best" in summary["probe"]
    state = torch.load(checkpoint_file(summary), weights_only=True)
    (key,) = [k for k in state["callbacks"] if k.startswith("FeatureMovement")]
    indices, initial = state["callbacks"][key]["indices"], state["callbacks"][key]["initial"]
    data = TranslatedMNIST(data_dir=data_env, download=False, target="shift")
    images = data.batch_transform(data.dataset("val").images[indices], train=False)
    folder = Path(summary["run_folder"])
    untrained, trained = (read_checkpoint(folder / summary[section]["checkpoint"]).build().net.features
                          for section in ("probe_untrained", "probe"))
    assert "probe_untrained" in summary["probe_untrained"]["checkpoint"]
    with torch.no_grad():
        assert torch.allclose(untrained(images), initial, atol=1e-6)
        assert not torch.allclose(trained(images), initial, atol=1e-3)
