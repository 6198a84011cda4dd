"""Model shapes, the masked loss, per-channel loss weights and batch augmentation."""

import numpy as np
import pytest
import torch

from workbench.augment import augment_log_mel
from workbench.model import BlendshapeModel, blendshape_loss, inverse_variance_weights


@pytest.mark.parametrize("kind", ["gru", "conv", "transformer"])
def test_model_output_shape_and_range(kind):
    model = BlendshapeModel(kind=kind, hidden=32, rnn_layers=1).eval()
    out = model(torch.randn(2, 57, 80))
    assert out.shape == (2, 57, 52)
    assert out.min() >= 0
    assert out.max() <= 1


def test_init_from_data_starts_at_target_mean():
    model = BlendshapeModel(hidden=16, rnn_layers=1).eval()
    target_mean = np.linspace(0.01, 0.5, 52)
    model.init_from_data(np.zeros(80), np.ones(80), target_mean)
    with torch.no_grad():
        torch.nn.init.zeros_(model.head.weight)
        out = model(torch.randn(1, 10, 80))
    np.testing.assert_allclose(out[0, 0].numpy(), target_mean, atol=1e-5)


def test_loss_ignores_masked_entries():
    pred = torch.zeros(1, 4, 52)
    target = torch.zeros(1, 4, 52)
    target[..., 5] = 1.0  # large error on a masked channel
    mask = torch.ones(1, 4, 52, dtype=torch.bool)
    mask[..., 5] = False
    assert blendshape_loss(pred, target, mask).item() == 0.0


def test_loss_matches_numpy_with_velocity_term():
    rng = np.random.default_rng(0)
    pred, target = rng.random((2, 6, 52)), rng.random((2, 6, 52))
    mask = rng.random((2, 6, 52)) > 0.3
    mse = ((pred - target) ** 2 * mask).sum() / mask.sum()
    dmask = mask[:, 1:] & mask[:, :-1]
    dvel = (np.diff(pred, axis=1) - np.diff(target, axis=1)) ** 2
    expected = mse + 0.5 * (dvel * dmask).sum() / dmask.sum()
    got = blendshape_loss(torch.tensor(pred), torch.tensor(target), torch.tensor(mask), 0.5)
    assert got.item() == pytest.approx(expected)


def test_inverse_variance_weights():
    rng = np.random.default_rng(0)
    targets = np.zeros((1000, 52))
    targets[:, 17] = rng.random(1000) * 0.6  # jawOpen: large variance
    targets[:, 31] = rng.random(1000) * 0.1  # mouthRollLower: small variance
    mask = np.zeros(52, bool)
    mask[[17, 31, 40]] = True  # channel 40 present but constant
    weights = inverse_variance_weights(targets, mask)
    assert weights[~mask].sum() == 0
    assert weights[mask].mean() == pytest.approx(1.0)
    # A sixth of the range gives 36 times the weight; the constant channel is capped by the floor.
    assert weights[31] / weights[17] == pytest.approx(36.0, rel=0.1)
    assert weights[40] == weights.max()


def test_augment_masks_and_is_seeded():
    mel = torch.randn(8, 200, 80)
    fill = torch.full((80,), 9.0)
    torch.manual_seed(1)
    first = augment_log_mel(mel, fill)
    torch.manual_seed(1)
    second = augment_log_mel(mel, fill)
    torch.testing.assert_close(first, second)
    masked = (first == 9.0).float().mean().item()
    assert 0.02 < masked < 0.5
    # Unmasked values differ from the input only by one gain offset per example.
    offsets = (first - mel)[first != 9.0]
    assert offsets.abs().max() <= 6.0 * np.log(10) / 10 + 1e-5
    assert mel.shape == first.shape
