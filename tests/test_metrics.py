"""BlendshapeMetrics against a plain numpy computation on hand-made arrays."""

import math

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from workbench.arkit import ARKIT_INDEX, REGIONS
from workbench.metrics import CORE_METRICS, BlendshapeMetrics

JAW = ARKIT_INDEX["jawOpen"]


def make_batch(seed=0, batch=3, frames=40, channels=52):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0, 1, (batch, frames, channels))
    pred = np.clip(target + rng.normal(0, 0.1, target.shape), 0, 1)
    mask = np.ones(target.shape, dtype=bool)
    mask[0, :, 5] = False            # channel absent in clip 0
    mask[1, 30:, :] = False          # padded frames of clip 1
    target[:, :, 10] = 0.3           # constant channel everywhere
    target[2, :, 20] = 0.7           # channel 20 moves in clips 0 and 1 only
    mask[:, :, 51] = False           # channel never valid
    pred[~mask] = np.nan             # masked entries must be ignored, even NaN
    return pred, target, mask


def numpy_reference(pred, target, mask, silence=None):
    """Straightforward two-pass reference for the metrics."""
    error = (pred - target)[mask]
    result = {"mae": np.abs(error).mean(), "mse": np.square(error).mean()}

    correlations, constant = [], 0
    for c in range(pred.shape[-1]):
        valid = mask[..., c]
        if not valid.any():
            continue
        x, y = pred[..., c][valid], target[..., c][valid]
        if y.var() < 1e-12:
            constant += 1
            continue
        correlations.append(np.corrcoef(x, y)[0, 1])
    result["mean_correlation"] = float(np.mean(correlations))
    result["constant_channels"] = constant

    for region, indices in REGIONS.items():
        region_mask = mask[..., list(indices)]
        region_error = (pred - target)[..., list(indices)][region_mask]
        result[f"mae_{region}"] = np.abs(region_error).mean() if region_error.size else math.nan

    pair = mask[:, 1:] & mask[:, :-1]
    velocity = np.diff(pred, axis=1) - np.diff(target, axis=1)
    result["velocity_mae"] = np.abs(velocity[pair]).mean()

    if silence is None:
        result["silence_jaw_open"] = math.nan
    else:
        silent = silence & mask[..., JAW]
        result["silence_jaw_open"] = pred[..., JAW][silent].mean() if silent.any() else math.nan
    return result


def to_tensors(pred, target, mask, silence=None):
    tensors = [torch.from_numpy(pred).float(), torch.from_numpy(target).float(), torch.from_numpy(mask)]
    tensors.append(None if silence is None else torch.from_numpy(silence))
    return tensors


def assert_metrics_close(actual, expected):
    assert set(actual) == set(expected)
    for name, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(actual[name]), name
        else:
            assert actual[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_compute_matches_numpy():
    pred, target, mask = make_batch()
    silence = np.zeros(pred.shape[:2], dtype=bool)
    silence[:, :8] = True
    # float32 is what the model produces, so the reference uses the same rounding.
    pred32, target32 = pred.astype(np.float32).astype(np.float64), target.astype(np.float32).astype(np.float64)

    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask, silence))
    result = metrics.compute()

    assert_metrics_close(result, numpy_reference(pred32, target32, mask, silence))


def test_constant_and_absent_channels_counted():
    pred, target, mask = make_batch()
    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask))
    result = metrics.compute()
    # Channel 10 is constant everywhere. Channel 20 moves in two clips, so it counts as
    # moving. Channel 51 is never valid and is neither moving nor constant.
    assert result["constant_channels"] == 1


def test_masked_entries_ignored():
    pred, target, mask = make_batch()
    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask))
    before = metrics.compute()

    garbage = pred.copy()
    garbage[~mask] = 1e6
    metrics.reset()
    metrics.update(*to_tensors(garbage, target, mask))
    after = metrics.compute()

    for name in before:
        assert after[name] == pytest.approx(before[name], nan_ok=True), name


def test_accumulation_equals_one_update():
    pred, target, mask = make_batch(batch=4)
    silence = np.zeros(pred.shape[:2], dtype=bool)
    silence[:, -5:] = True

    whole = BlendshapeMetrics()
    whole.update(*to_tensors(pred, target, mask, silence))

    parts = BlendshapeMetrics()
    for i in range(4):
        parts.update(*to_tensors(pred[i:i + 1], target[i:i + 1], mask[i:i + 1], silence[i:i + 1]))

    expected = whole.compute()
    actual = parts.compute()
    for name in expected:
        assert actual[name] == pytest.approx(expected[name], rel=1e-12, nan_ok=True), name


def test_reset_starts_new_epoch():
    pred, target, mask = make_batch(seed=1)
    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask, np.ones(pred.shape[:2], dtype=bool)))
    metrics.reset()

    empty = metrics.compute()
    assert all(math.isnan(empty[name]) for name in CORE_METRICS)
    assert math.isnan(empty["silence_jaw_open"])

    other_pred, other_target, other_mask = make_batch(seed=2)
    metrics.update(*to_tensors(other_pred, other_target, other_mask))
    fresh = BlendshapeMetrics()
    fresh.update(*to_tensors(other_pred, other_target, other_mask))
    assert metrics.compute() == pytest.approx(fresh.compute(), nan_ok=True)


def test_keys_always_the_same():
    metrics = BlendshapeMetrics()
    empty_keys = list(metrics.compute())
    pred, target, mask = make_batch()
    metrics.update(*to_tensors(pred, target, mask))
    assert list(metrics.compute()) == empty_keys
    assert tuple(empty_keys) == metrics.metric_names
    assert set(CORE_METRICS) <= set(empty_keys)
    assert {f"mae_{region}" for region in REGIONS} <= set(empty_keys)


def test_region_without_data_is_nan():
    pred, target, mask = make_batch()
    mask[..., list(REGIONS["brows"])] = False
    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask))
    result = metrics.compute()
    assert math.isnan(result["mae_brows"])
    assert not math.isnan(result["mae_jaw_mouth"])


def test_region_mae_by_hand():
    pred = np.zeros((1, 2, 52))
    target = np.zeros((1, 2, 52))
    pred[..., REGIONS["eyes"][0]] = 0.5   # one eye channel off by 0.5 on both frames
    pred[..., JAW] = 0.1                  # jawOpen off by 0.1
    mask = np.ones_like(pred, dtype=bool)
    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask))
    result = metrics.compute()
    assert result["mae_eyes"] == pytest.approx(0.5 / len(REGIONS["eyes"]))
    assert result["mae_jaw_mouth"] == pytest.approx(0.1 / len(REGIONS["jaw_mouth"]), rel=1e-6)
    assert result["mae_brows"] == 0.0


def test_velocity_only_on_valid_pairs():
    # One channel: target steps 0 -> 1, prediction stays at 0. Frame 2 is padding.
    pred = np.zeros((1, 4, 52))
    target = np.zeros((1, 4, 52))
    target[0, 1:, 0] = 1.0
    pred[0, 2, 0] = 50.0
    mask = np.zeros_like(pred, dtype=bool)
    mask[0, [0, 1, 3], 0] = True
    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask))
    # Only the pair (0, 1) is valid: velocity error |0 - 1| = 1.
    assert metrics.compute()["velocity_mae"] == pytest.approx(1.0)


def test_silence_jaw_open():
    pred = np.zeros((2, 5, 52))
    pred[0, :, JAW] = [0.2, 0.4, 0.9, 0.9, 0.9]
    pred[1, :, JAW] = 0.6
    target = np.zeros_like(pred)
    mask = np.ones_like(pred, dtype=bool)
    mask[1, 3:] = False  # padding frames of clip 1 are never silent frames
    silence = np.zeros((2, 5), dtype=bool)
    silence[0, :2] = True
    silence[1, 2:] = True

    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask, silence))
    # Silent valid frames: clip 0 frames 0-1 (0.2, 0.4) and clip 1 frame 2 (0.6).
    assert metrics.compute()["silence_jaw_open"] == pytest.approx(0.4)


def test_silence_given_but_none_silent_is_nan():
    pred, target, mask = make_batch()
    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask, np.zeros(pred.shape[:2], dtype=bool)))
    assert math.isnan(metrics.compute()["silence_jaw_open"])


def test_constant_channel_over_many_updates():
    # One-pass sums of a constant 0.3 accumulate rounding error; it must stay below the
    # constant-variance threshold for a realistic epoch length.
    metrics = BlendshapeMetrics(num_channels=2, silence_channel=None)
    rng = np.random.default_rng(0)
    for _ in range(2000):
        target = np.stack([np.full((8, 50), 0.3), rng.uniform(0, 1, (8, 50))], axis=-1)
        pred = rng.uniform(0, 1, target.shape)
        metrics.update(*to_tensors(pred, target, np.ones(target.shape, dtype=bool)))
    result = metrics.compute()
    assert result["constant_channels"] == 1
    assert abs(result["mean_correlation"]) < 0.01


def test_perfect_and_anticorrelated():
    t = np.linspace(0, 1, 30)
    target = np.zeros((1, 30, 52))
    target[0, :, 0] = t
    target[0, :, 1] = t ** 2
    pred = target.copy()
    pred[0, :, 1] = 1 - t ** 2
    mask = np.zeros_like(pred, dtype=bool)
    mask[..., :2] = True
    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask))
    assert metrics.compute()["mean_correlation"] == pytest.approx(0.0, abs=1e-6)


def test_flat_prediction_counts_zero():
    target = np.zeros((1, 20, 52))
    target[0, :, 0] = np.linspace(0, 1, 20)
    pred = np.full_like(target, 0.5)
    mask = np.zeros_like(pred, dtype=bool)
    mask[..., 0] = True
    metrics = BlendshapeMetrics()
    metrics.update(*to_tensors(pred, target, mask))
    assert metrics.compute()["mean_correlation"] == 0.0


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p, t, m: (p[..., :51], t, m), "pred must have shape"),
        (lambda p, t, m: (p, t[:, :-1], m), "target shape"),
        (lambda p, t, m: (p, t, m.float()), "bool"),
        (lambda p, t, m: (p, t, m[:, :, :1]), "mask shape"),
    ],
)
def test_update_rejects_bad_shapes(change, message):
    pred, target, mask, _ = to_tensors(*make_batch())
    with pytest.raises(ValueError, match=message):
        BlendshapeMetrics().update(*change(pred, target, mask))


def test_update_rejects_other_device():
    pred, target, mask, _ = to_tensors(*make_batch())
    metrics = BlendshapeMetrics(device="meta")
    with pytest.raises(ValueError, match="meta"):
        metrics.update(pred, target, mask)


def test_silence_channel_validation():
    with pytest.raises(ValueError, match="not an ARKit"):
        BlendshapeMetrics(silence_channel="JawOpen")
    with pytest.raises(ValueError, match="index"):
        BlendshapeMetrics(num_channels=10)
    assert BlendshapeMetrics(num_channels=10, silence_channel=3).silence_channel == 3


# Ops that read tensor values on the host or whose output shape depends on values. On a
# GPU each of them makes the host wait for the device.
SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "equal", "is_nonzero"}


class ForbidHostSync(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNC_OPS:
            raise AssertionError(f"host sync through aten.{name}")
        if name in ("index", "index_put", "index_put_"):
            # Boolean indexing becomes nonzero inside the CUDA kernel: x[mask] syncs.
            indices = args[1] if len(args) > 1 else []
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                raise AssertionError(f"host sync through boolean aten.{name}")
        if name in ("_to_copy", "copy_"):
            devices = {arg.device.type for arg in args if isinstance(arg, torch.Tensor)}
            target = (kwargs or {}).get("device")
            if target is not None and torch.device(target).type != next(iter(devices)):
                raise AssertionError(f"device copy through aten.{name}")
        return func(*args, **(kwargs or {}))


@pytest.fixture
def no_python_sync(monkeypatch):
    """Make the Python-level ways of reading tensor values raise."""
    def forbid(name):
        def raiser(self, *args, **kwargs):
            raise AssertionError(f"host sync through Tensor.{name}")
        return raiser

    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, forbid(name))


# The guards must be able to fail, or the test of update proves nothing.
def test_python_guard_catches_item(no_python_sync):
    with pytest.raises(AssertionError, match="item"):
        torch.ones(2).sum().item()
    with pytest.raises(AssertionError, match="__bool__"):
        bool(torch.ones(2).sum() > 0)


def test_dispatch_guard_catches_sync():
    with pytest.raises(AssertionError, match="_local_scalar_dense"), ForbidHostSync():
        float(torch.ones(2).sum())
    with pytest.raises(AssertionError, match="nonzero"), ForbidHostSync():
        torch.ones(3).nonzero()
    with pytest.raises(AssertionError, match="boolean"), ForbidHostSync():
        torch.ones(3)[torch.tensor([True, False, True])]
    with pytest.raises(AssertionError, match="device copy"), ForbidHostSync():
        torch.ones(3, device="meta").to("cpu")


def test_update_has_no_host_sync(no_python_sync):
    pred, target, mask, silence = to_tensors(*make_batch(), np.ones((3, 40), dtype=bool))
    metrics = BlendshapeMetrics()
    with ForbidHostSync():
        metrics.update(pred, target, mask, silence)
        metrics.update(pred, target, mask)


def test_update_runs_on_meta_device():
    # Meta tensors have no data, so any read of values in update raises.
    shape = (2, 7, 52)
    metrics = BlendshapeMetrics(device="meta")
    metrics.update(
        torch.empty(shape, device="meta"),
        torch.empty(shape, device="meta"),
        torch.empty(shape, device="meta", dtype=torch.bool),
        torch.empty(shape[:2], device="meta", dtype=torch.bool),
    )
    assert metrics._sums.device.type == "meta"
