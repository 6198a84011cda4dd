"""Config loading: defaults, dotlist overrides and the errors for bad keys and values."""

import pytest

from workbench.config import DEFAULT_CONFIG, load_config, to_flat_dict
from workbench.errors import ConfigError

REQUIRED_KEYS = [
    "data.root", "training.max_epochs", "training.batch_size", "training.lr", "training.validation_freq",
    "training.seed", "logging.log_freq", "logging.log_grad_norm", "run.root", "run.name", "debug",
]


def test_default_config_has_required_keys():
    flat = to_flat_dict(load_config(DEFAULT_CONFIG))
    for key in REQUIRED_KEYS:
        assert key in flat, key
    assert flat["run.root"] == "runs"


def test_override_sets_typed_value():
    cfg = load_config(DEFAULT_CONFIG, ["training.max_epochs=5", "training.lr=0.01", "debug=true"])
    assert cfg.training.max_epochs == 5
    assert cfg.training.lr == pytest.approx(0.01)
    assert cfg.debug is True


def test_config_is_read_only():
    cfg = load_config(DEFAULT_CONFIG)
    with pytest.raises(Exception):
        cfg.training.max_epochs = 3


@pytest.mark.parametrize("override, expected", [
    ("training.foo=1", ["unknown config key", "training.foo", "max_epochs"]),
    ("foo.bar=1", ["unknown config key", "foo", "training"]),
    ("training.max_epochs=abc", ["training.max_epochs", "abc"]),
    ("training.max_epochs=-3", ["training.max_epochs", "-3", ">= 1"]),
    ("training.batch_size=0", ["training.batch_size", "0"]),
    ("logging.log_freq=0", ["logging.log_freq", "0"]),
    ("model.kind=lstm", ["model.kind", "lstm", "gru"]),
    ("training.nan_policy=ignore", ["training.nan_policy", "ignore", "stop", "skip"]),
    ("training.validation_freq=50", ["training.validation_freq=50", "max_epochs"]),
    ("features.f_max=12000", ["features.f_max", "Nyquist"]),
    ("training.lr", ["training.lr", "key=value"]),
])
def test_bad_override_names_key_and_value(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config(DEFAULT_CONFIG, [override])
    for fragment in expected:
        assert fragment in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_names_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("training: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("training:\n  max_epoch: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "training.max_epoch" in str(info.value)
    assert "max_epochs" in str(info.value)
