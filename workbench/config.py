"""Run configuration: a typed schema, YAML loading, dotlist overrides and value checks.

The schema is a tree of dataclasses turned into an OmegaConf structured config, so an
unknown key or a value of the wrong type fails at load time with the key in the message.
Range and choice checks that types cannot express live in `validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from workbench.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


@dataclass
class DataConfig:
    root: str = ""  # folder of clips (audio + labels) or a manifest.csv; required
    val_clips: int = 1  # clips held out for validation, chosen by training.seed
    window_seconds: float = 2.0  # training window length
    window_hop_seconds: float = 1.0  # hop between training windows of one clip
    max_length_mismatch_seconds: float = 0.5  # audio vs labels; beyond this is an error
    on_bad_clip: str = "error"  # "error" stops; "skip" drops the clip with a warning
    max_clips: int = 0  # use only the first N clips (sorted by name); 0 = all


@dataclass
class FeatureConfig:
    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0  # 10 ms hop = 100 feature frames per second
    n_fft: int = 512
    f_min: float = 20.0
    f_max: float = 8000.0
    cache_dir: str = ".cache/features"


@dataclass
class ModelConfig:
    kind: str = "conv"  # conv | gru | transformer
    hidden: int = 128
    conv_layers: int = 2
    kernel_size: int = 5
    rnn_layers: int = 2
    bidirectional: bool = True
    heads: int = 4  # transformer only
    dropout: float = 0.1


@dataclass
class TrainingConfig:
    max_epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | adam | sgd
    scheduler: str = "cosine"  # none | cosine | step
    step_size: int = 10  # epochs per decay, "step" scheduler only
    gamma: float = 0.5  # decay factor, "step" scheduler only
    grad_clip: float = 1.0  # max total L2 norm; 0 disables clipping
    velocity_weight: float = 0.5  # weight of the frame-difference term in the loss
    loss_weighting: str = "inverse_variance"  # none | inverse_variance (per channel, from train targets)
    augment: bool = False  # random gain and time/frequency masks on training batches
    validation_freq: int = 1  # validate when epoch % validation_freq == 0, and at the end
    best_metric: str = "mean_correlation"  # validation metric that selects best.pt
    best_mode: str = "max"  # max | min
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "none"  # none | bf16 (autocast for forward and loss)
    nan_policy: str = "stop"  # stop | skip
    max_nan_skips: int = 10  # skip policy: stop after this many skipped steps


@dataclass
class LoggingConfig:
    log_freq: int = 10  # optimizer steps between step-level scalars
    log_grad_norm: bool = True
    histogram_freq: int = 1  # epochs; 0 disables
    weight_histograms: bool = False
    figure_freq: int = 1  # epochs; 0 disables
    audio_freq: int = 5  # epochs; 0 disables
    progress_bar: bool = True


@dataclass
class RunConfig:
    root: str = "runs"
    name: str = ""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    run: RunConfig = field(default_factory=RunConfig)
    debug: bool = False


CHOICES: dict[str, tuple[str, ...]] = {
    "data.on_bad_clip": ("error", "skip"),
    "model.kind": ("gru", "conv", "transformer"),
    "training.optimizer": ("adamw", "adam", "sgd"),
    "training.scheduler": ("none", "cosine", "step"),
    "training.best_mode": ("max", "min"),
    "training.device": ("auto", "cpu", "cuda"),
    "training.amp": ("none", "bf16"),
    "training.nan_policy": ("stop", "skip"),
    "training.loss_weighting": ("none", "inverse_variance"),
}

# key -> the rule shown in the error message
POSITIVE: dict[str, str] = {
    "training.max_epochs": "an integer >= 1",
    "training.batch_size": "an integer >= 1",
    "training.lr": "a number > 0",
    "training.validation_freq": "an integer >= 1",
    "logging.log_freq": "an integer >= 1",
    "data.window_seconds": "a number > 0",
    "data.window_hop_seconds": "a number > 0",
    "features.sample_rate": "an integer > 0",
    "features.n_mels": "an integer > 0",
    "features.hop_ms": "a number > 0",
    "features.win_ms": "a number > 0",
    "model.hidden": "an integer > 0",
    "training.max_nan_skips": "an integer >= 1",
}
NON_NEGATIVE: dict[str, str] = {
    "data.val_clips": "an integer >= 0",
    "data.max_clips": "an integer >= 0",
    "training.weight_decay": "a number >= 0",
    "training.grad_clip": "a number >= 0 (0 disables clipping)",
    "training.velocity_weight": "a number >= 0",
    "logging.histogram_freq": "an integer >= 0 (0 disables)",
    "logging.figure_freq": "an integer >= 0 (0 disables)",
    "logging.audio_freq": "an integer >= 0 (0 disables)",
    "model.dropout": "a number >= 0",
}


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Load a YAML config over the schema defaults, apply `key=value` overrides, validate.

    Raises ConfigError naming the file, key and value when anything is wrong.
    """
    schema = OmegaConf.structured(Config)
    layers = [schema]

    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}; pass an existing YAML file with -c")
        try:
            layers.append(OmegaConf.load(path))
        except Exception as exc:  # YAML syntax errors come in several exception types
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. training.max_epochs=5)")
    try:
        if overrides:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        cfg = OmegaConf.merge(*layers)
    except OmegaConfBaseException as exc:
        raise ConfigError(_describe_omegaconf_error(exc, path)) from None

    validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _describe_omegaconf_error(exc: OmegaConfBaseException, path: Path | None) -> str:
    source = f" (from {path} or overrides)" if path else ""
    key = getattr(exc, "full_key", None) or "?"
    message = str(exc).splitlines()[0]
    if "not in struct" in message or "Key '" in message and "not in" in message:
        section = key.rsplit(".", 1)[0] if "." in key else ""
        allowed = _keys_of(section)
        return f"unknown config key {key!r}{source}; allowed keys here: {', '.join(allowed)}"
    return f"invalid value for config key {key!r}{source}: {message}"


def _keys_of(section: str) -> list[str]:
    node = OmegaConf.structured(Config)
    if section:
        node = OmegaConf.select(node, section)
    return sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []


def validate(cfg: DictConfig) -> None:
    """Check ranges and choices that the schema types cannot express."""
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key)
        if value not in allowed:
            raise ConfigError(f"invalid value {value!r} for {key}; allowed: {', '.join(allowed)}")

    for key, rule in POSITIVE.items():
        value = OmegaConf.select(cfg, key)
        if not value > 0:
            raise ConfigError(f"invalid value {value!r} for {key}; expected {rule}")
    for key, rule in NON_NEGATIVE.items():
        value = OmegaConf.select(cfg, key)
        if value < 0:
            raise ConfigError(f"invalid value {value!r} for {key}; expected {rule}")

    t = cfg.training
    if t.validation_freq > t.max_epochs:
        raise ConfigError(
            f"training.validation_freq={t.validation_freq} is larger than training.max_epochs="
            f"{t.max_epochs}, so validation would run only at the end; lower validation_freq "
            "or raise max_epochs"
        )
    if not 0 <= cfg.model.dropout < 1:
        raise ConfigError(f"invalid value {cfg.model.dropout!r} for model.dropout; expected 0 <= dropout < 1")
    if cfg.features.f_max > cfg.features.sample_rate / 2:
        raise ConfigError(
            f"features.f_max={cfg.features.f_max} is above the Nyquist frequency "
            f"{cfg.features.sample_rate / 2} Hz of features.sample_rate={cfg.features.sample_rate}"
        )
    if cfg.model.kind == "transformer" and cfg.model.hidden % cfg.model.heads:
        raise ConfigError(
            f"model.hidden={cfg.model.hidden} must be divisible by model.heads={cfg.model.heads}"
        )


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_flat_dict(cfg: DictConfig) -> dict[str, Any]:
    """Flatten to {"training.lr": 0.002, ...}; used for hparams and sweep tables."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            else:
                flat[name] = value

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat
