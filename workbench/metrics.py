"""Epoch-level blendshape metrics, accumulated on the device without host syncs.

``BlendshapeMetrics.update`` runs on every training batch, so it only adds per-channel
sums to float64 tensors that live on the model's device. ``compute`` is the single point
that copies those sums to the host and turns them into numbers.

Metric keys (the same set after every ``compute``, see ``BlendshapeMetrics.metric_names``):

- ``mae``, ``mse``: mean absolute and squared error over all valid (frame, channel) entries.
- ``mean_correlation``: Pearson correlation per channel over all valid frames of the epoch,
  averaged over the channels whose target moves.
- ``constant_channels``: number of valid channels left out of ``mean_correlation`` because
  their target variance is below ``CONSTANT_VARIANCE``.
- ``mae_<region>`` for each region of ``workbench.arkit.REGIONS`` (NaN when the region had no
  valid entry).
- ``velocity_mae``: mean absolute error of the frame-to-frame difference, over pairs of
  consecutive frames that are both valid.
- ``silence_jaw_open``: mean predicted jawOpen on silent frames (NaN when no silence mask
  was given or no valid frame was silent).
"""

from __future__ import annotations

import logging
import math

import torch

from workbench.arkit import ARKIT_INDEX, NUM_BLENDSHAPES, REGIONS

logger = logging.getLogger(__name__)

CORE_METRICS: tuple[str, ...] = ("mae", "mse", "mean_correlation")

# Target variance (in squared blendshape units) below which a channel counts as constant.
CONSTANT_VARIANCE = 1e-12

# Rows of the per-channel accumulator matrix. Keeping all sums in one [rows, C] tensor
# means ``compute`` needs a single device-to-host copy.
_COUNT, _ABS_ERR, _SQ_ERR, _SUM_X, _SUM_Y, _SUM_XX, _SUM_YY, _SUM_XY, _VEL_COUNT, _VEL_ABS = range(10)
_NUM_ROWS = 10


class BlendshapeMetrics:
    """Accumulator of blendshape errors and correlations over one epoch.

    ``pred`` is channel x in the correlation formulas and ``target`` is channel y. Channels
    follow the ARKit order of ``workbench.arkit.ARKIT_NAMES`` when ``num_channels`` is 52.
    With any other channel count the region metrics are NaN, and ``silence_channel`` must
    be an index or None.
    """

    def __init__(
        self,
        num_channels: int = NUM_BLENDSHAPES,
        device: str | torch.device = "cpu",
        silence_channel: str | int | None = "jawOpen",
    ) -> None:
        if not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"num_channels must be a positive int, got {num_channels!r}")
        self.num_channels = num_channels
        self.device = torch.device(device)
        self.silence_channel = self._resolve_silence_channel(silence_channel, num_channels)

        # MPS has no float64, so sums there are float32 and lose precision on long epochs.
        self.dtype = torch.float32 if self.device.type == "mps" else torch.float64
        if self.dtype != torch.float64:
            logger.warning("device %s has no float64; metric sums use float32", self.device)

        self.reset()

    @staticmethod
    def _resolve_silence_channel(channel: str | int | None, num_channels: int) -> int | None:
        if channel is None:
            return None
        if isinstance(channel, str):
            if num_channels != NUM_BLENDSHAPES:
                raise ValueError(
                    f"silence_channel={channel!r} is an ARKit name, but num_channels is "
                    f"{num_channels}, not {NUM_BLENDSHAPES}; pass a channel index or None"
                )
            if channel not in ARKIT_INDEX:
                raise ValueError(
                    f"silence_channel {channel!r} is not an ARKit blendshape name; "
                    "use a camelCase name such as 'jawOpen'"
                )
            return ARKIT_INDEX[channel]
        if isinstance(channel, int) and 0 <= channel < num_channels:
            return channel
        raise ValueError(
            f"silence_channel must be an ARKit name or an index in [0, {num_channels}), "
            f"got {channel!r}"
        )

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Keys of the dict that ``compute`` returns, in a stable order."""
        regions = tuple(f"mae_{name}" for name in REGIONS)
        return CORE_METRICS + ("constant_channels",) + regions + ("velocity_mae", "silence_jaw_open")

    def reset(self) -> None:
        """Zero all sums so the next ``update`` starts a new epoch."""
        self._sums = torch.zeros(_NUM_ROWS, self.num_channels, dtype=self.dtype, device=self.device)
        # [sum of predicted silence channel, count of silent valid frames]
        self._silence = torch.zeros(2, dtype=self.dtype, device=self.device)
        # A Python flag set from the call signature, never from tensor values.
        self._silence_seen = False

    def _check_inputs(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        silence: torch.Tensor | None,
    ) -> None:
        # Only shapes, dtypes and devices are checked: reading values would sync the host.
        if pred.dim() != 3 or pred.shape[-1] != self.num_channels:
            raise ValueError(
                f"pred must have shape [batch, frames, {self.num_channels}], got {tuple(pred.shape)}"
            )
        if target.shape != pred.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match pred shape {tuple(pred.shape)}"
            )
        if mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got dtype {mask.dtype}")
        if mask.shape != pred.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match pred shape {tuple(pred.shape)}")
        if silence is not None:
            if silence.dtype != torch.bool:
                raise ValueError(f"silence must be a bool tensor, got dtype {silence.dtype}")
            if silence.shape != pred.shape[:2]:
                raise ValueError(
                    f"silence must have shape [batch, frames] = {tuple(pred.shape[:2])}, "
                    f"got {tuple(silence.shape)}"
                )
        for name, tensor in (("pred", pred), ("target", target), ("mask", mask), ("silence", silence)):
            if tensor is not None and not _same_device(tensor.device, self.device):
                # Copying to another device here would be a host sync on every batch.
                raise ValueError(
                    f"{name} is on {tensor.device} but the metrics accumulate on {self.device}; "
                    f"create BlendshapeMetrics(device={str(tensor.device)!r})"
                )

    @torch.no_grad()
    def update(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor,
        silence: torch.Tensor | None = None,
    ) -> None:
        """Add one batch to the epoch sums.

        ``pred`` and ``target`` are float ``[B, T, C]``. ``mask`` is bool ``[B, T, C]`` and is
        False for channels a clip lacks and for padded frames. ``silence`` is an optional bool
        ``[B, T]`` that marks frames whose audio is silent. Values under a False mask are
        ignored, even when they are NaN.
        """
        self._check_inputs(pred, target, mask, silence)
        # TODO: float64 sums cost 2-3 ms per step on a tiny model (benchmarks/README.md); float32 needs a shifted-mean accumulator first.
        x = pred.detach().to(self.dtype)
        y = target.detach().to(self.dtype)
        valid = mask.to(self.dtype)

        # torch.where instead of a product so that NaN in masked entries cannot leak in.
        x = torch.where(mask, x, 0.0)
        y = torch.where(mask, y, 0.0)
        error = x - y

        batch_sums = torch.stack(
            (
                valid.sum(dim=(0, 1)),
                error.abs().sum(dim=(0, 1)),
                error.square().sum(dim=(0, 1)),
                x.sum(dim=(0, 1)),
                y.sum(dim=(0, 1)),
                x.square().sum(dim=(0, 1)),
                y.square().sum(dim=(0, 1)),
                (x * y).sum(dim=(0, 1)),
                *self._velocity_sums(x, y, mask),
            )
        )
        self._sums += batch_sums

        if silence is not None:
            self._silence_seen = True
            if self.silence_channel is not None:
                silent = silence & mask[..., self.silence_channel]
                jaw = torch.where(silent, x[..., self.silence_channel], 0.0)
                self._silence += torch.stack((jaw.sum(), silent.to(self.dtype).sum()))

    def _velocity_sums(
        self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # A velocity is valid when both frames of the pair are valid.
        pair_valid = mask[:, 1:] & mask[:, :-1]
        velocity_error = (x[:, 1:] - x[:, :-1]) - (y[:, 1:] - y[:, :-1])
        velocity_error = torch.where(pair_valid, velocity_error.abs(), 0.0)
        return pair_valid.to(self.dtype).sum(dim=(0, 1)), velocity_error.sum(dim=(0, 1))

    def compute(self) -> dict[str, float]:
        """Return the epoch metrics as Python floats; this is the only host sync.

        Every key of ``metric_names`` is present. A metric without data is NaN.
        """
        sums = self._sums.double().cpu()
        silence = self._silence.double().cpu()
        count = sums[_COUNT]
        total = count.sum().item()

        results: dict[str, float] = {
            "mae": _ratio(sums[_ABS_ERR].sum().item(), total),
            "mse": _ratio(sums[_SQ_ERR].sum().item(), total),
        }
        results["mean_correlation"], results["constant_channels"] = _mean_correlation(sums)

        for region, indices in REGIONS.items():
            if self.num_channels != NUM_BLENDSHAPES:
                results[f"mae_{region}"] = math.nan
                continue
            index = torch.tensor(indices)
            results[f"mae_{region}"] = _ratio(
                sums[_ABS_ERR, index].sum().item(), count[index].sum().item()
            )

        results["velocity_mae"] = _ratio(sums[_VEL_ABS].sum().item(), sums[_VEL_COUNT].sum().item())
        if self._silence_seen:
            results["silence_jaw_open"] = _ratio(silence[0].item(), silence[1].item())
        else:
            results["silence_jaw_open"] = math.nan
        return {name: results[name] for name in self.metric_names}


def _mean_correlation(sums: torch.Tensor) -> tuple[float, float]:
    """Return (mean Pearson r over moving channels, number of constant valid channels).

    The covariance and variances come from one-pass sums:
    ``cov = Σxy - Σx·Σy/n`` and ``var = Σx² - (Σx)²/n``. This form cancels badly when a
    channel's mean is large next to its spread. In float64 (about 16 significant digits),
    with blendshape weights in [0, 1], the absolute error of ``var/n`` is of the order of
    (number of batches) x 1e-16. That is below ``CONSTANT_VARIANCE`` for up to about 10^4
    batches per epoch, and far below the variance of any channel that visibly moves.
    """
    n = sums[_COUNT]
    valid = n > 0
    safe_n = torch.where(valid, n, torch.ones_like(n))
    cov = sums[_SUM_XY] - sums[_SUM_X] * sums[_SUM_Y] / safe_n
    var_x = (sums[_SUM_XX] - sums[_SUM_X].square() / safe_n).clamp_min(0.0)
    var_y = (sums[_SUM_YY] - sums[_SUM_Y].square() / safe_n).clamp_min(0.0)

    moving = valid & (var_y / safe_n >= CONSTANT_VARIANCE)
    constant = int((valid & ~moving).sum().item())
    if not bool(moving.any()):
        return math.nan, float(constant)

    # Pearson r is undefined for a prediction that does not move. It counts as 0 (no
    # agreement), so a collapsed model cannot raise the mean by excluding channels.
    pred_moving = var_x / safe_n >= CONSTANT_VARIANCE
    denominator = torch.sqrt(var_x * var_y)
    r = torch.where(pred_moving, cov / torch.where(pred_moving, denominator, 1.0), 0.0)
    r = r.clamp(-1.0, 1.0)
    return r[moving].mean().item(), float(constant)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _same_device(a: torch.device, b: torch.device) -> bool:
    # torch.device("cuda") has index None and means the current device, usually index 0.
    if a.type != b.type:
        return False
    return a.index is None or b.index is None or a.index == b.index
