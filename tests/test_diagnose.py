"""Log diagnosis on synthetic series built to show each problem, and on real run-folder files."""

import math

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from torch.utils.tensorboard import SummaryWriter

from workbench.diagnose import (
    Finding,
    diagnose_run,
    diagnose_series,
    format_findings,
    main,
    read_run,
)
from workbench.errors import DataError

EPOCHS = 30
STEPS_PER_EPOCH = 50


def healthy_rows(seed=0, epochs=EPOCHS, validation_freq=2):
    """Epoch table of a run that learns steadily; val cells are missing between validations."""
    rng = np.random.default_rng(seed)
    epoch = np.arange(epochs)
    loss = 0.05 + 0.5 * np.exp(-epoch / 8) * (1 + rng.normal(0, 0.01, epochs))
    val = loss * 1.1 * (1 + rng.normal(0, 0.01, epochs))
    val[epoch % validation_freq != 0] = np.nan
    return pd.DataFrame({"epoch": epoch, "loss": loss, "mae": np.sqrt(loss), "val_loss": val, "val_mae": np.sqrt(val)})


def healthy_steps(seed=0, epochs=EPOCHS):
    rng = np.random.default_rng(seed)
    steps = np.arange(epochs * STEPS_PER_EPOCH)
    loss = 0.05 + 0.5 * np.exp(-steps / (8 * STEPS_PER_EPOCH)) * rng.lognormal(0, 0.2, steps.size)
    grad_norm = 2.0 * np.exp(-steps / 1000) * rng.lognormal(0, 0.3, steps.size) + 0.2
    lr = 1e-3 * 0.5 * (1 + np.cos(np.pi * steps / steps.size))
    return {
        "train/loss": list(zip(steps.tolist(), loss.tolist())),
        "train/grad_norm": list(zip(steps.tolist(), grad_norm.tolist())),
        "train/learning_rate": list(zip(steps.tolist(), lr.tolist())),
    }


def kinds(findings):
    return [finding.kind for finding in findings]


def only(findings, kind):
    matching = [finding for finding in findings if finding.kind == kind]
    assert len(matching) == 1, format_findings(findings)
    return matching[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_healthy_run_has_no_findings(seed):
    findings = diagnose_series(healthy_rows(seed), healthy_steps(seed), scheduler="cosine")
    assert findings == [], format_findings(findings)


def test_overfitting_detected_with_range():
    rows = healthy_rows()
    epoch = rows["epoch"].to_numpy()
    val = rows["val_loss"].to_numpy().copy()
    validated = ~np.isnan(val)
    # Validation loss bottoms out at epoch 10 and then climbs steadily.
    val[validated & (epoch > 10)] = val[10] * (1 + 0.03 * (epoch[validated & (epoch > 10)] - 10))
    rows["val_loss"] = val

    finding = only(diagnose_series(rows, healthy_steps(), scheduler="cosine"), "overfitting")
    assert (finding.first_epoch, finding.last_epoch) == (10, 28)
    assert finding.axis == "epoch"
    assert f"{val[10]:.4f}" in finding.evidence
    assert f"{val[28]:.4f}" in finding.evidence


def test_overfitting_needs_falling_train_loss():
    rows = healthy_rows()
    rows.loc[rows["epoch"] > 10, "val_loss"] = rows.loc[10, "val_loss"] * 1.5
    rows.loc[rows["epoch"] > 10, "loss"] = rows.loc[10, "loss"] * 1.5  # both rise: not overfitting
    assert "overfitting" not in kinds(diagnose_series(rows, {}))


def test_single_val_bump_is_not_overfitting():
    rows = healthy_rows()
    rows.loc[20, "val_loss"] = rows.loc[18, "val_loss"] * 1.3  # one noisy validation
    assert "overfitting" not in kinds(diagnose_series(rows, healthy_steps(), scheduler="cosine"))


def test_gradient_explosion_in_grad_norm():
    steps = healthy_steps()
    grad = [list(point) for point in steps["train/grad_norm"]]
    grad[600][1] = 80.0
    grad[606][1] = 120.0
    grad[1200][1] = 500.0
    steps["train/grad_norm"] = [tuple(point) for point in grad]

    findings = [f for f in diagnose_series(healthy_rows(), steps, scheduler="cosine") if f.kind == "gradient_explosion"]
    assert [(f.first_epoch, f.last_epoch) for f in findings] == [(600, 606), (1200, 1200)]
    assert all(f.axis == "step" for f in findings)
    assert "train/grad_norm" in findings[0].evidence
    assert "120" in findings[0].evidence


def test_gradient_explosion_in_loss():
    steps = healthy_steps()
    loss = [list(point) for point in steps["train/loss"]]
    loss[300][1] = 40.0
    steps["train/loss"] = [tuple(point) for point in loss]
    finding = only(diagnose_series(healthy_rows(), steps, scheduler="cosine"), "gradient_explosion")
    assert (finding.first_epoch, finding.last_epoch) == (300, 300)
    assert "train/loss" in finding.evidence


def test_collapsed_grad_norm_is_not_explosion():
    # Gradient norms of a run whose outputs saturated: values at rounding-noise level whose
    # ratios are huge but meaningless, after normal values at the start.
    rng = np.random.default_rng(0)
    noise = 10.0 ** rng.uniform(-20, -7, 200)
    values = np.concatenate([[0.9, 0.8, 0.95, 0.7, 0.9, 0.6], noise])
    steps = {"train/grad_norm": list(enumerate(values.tolist()))}
    assert "gradient_explosion" not in kinds(diagnose_series(healthy_rows(), steps))

    values[150] = 40.0  # a real spike after the collapse is still found
    steps = {"train/grad_norm": list(enumerate(values.tolist()))}
    finding = only(diagnose_series(healthy_rows(), steps), "gradient_explosion")
    assert finding.first_epoch == 150


def test_epoch_loss_spike_without_step_scalars():
    rows = healthy_rows()
    rows.loc[15, "loss"] = 50.0
    finding = only(diagnose_series(rows, {}), "gradient_explosion")
    assert finding.axis == "epoch"
    assert finding.first_epoch == 15


def test_stagnation_detected():
    rows = healthy_rows()
    plateau = rows["epoch"] >= 12
    rows.loc[plateau, "val_loss"] = 0.2 * (1 + 0.001 * np.sin(rows.loc[plateau, "epoch"]))
    rows.loc[rows["epoch"] % 2 == 1, "val_loss"] = np.nan
    finding = only(diagnose_series(rows, healthy_steps(), scheduler="cosine", patience=5), "stagnation")
    assert finding.first_epoch in (12, 14)
    assert finding.last_epoch == 28
    assert "val_loss" in finding.evidence


def test_stagnation_respects_patience():
    rows = healthy_rows(validation_freq=1)
    rows.loc[20:24, "val_loss"] = rows.loc[19, "val_loss"]  # flat for 5 epochs, then improves
    rows.loc[25:, "val_loss"] = rows.loc[19, "val_loss"] * 0.8
    assert "stagnation" not in kinds(diagnose_series(rows, {}, patience=6))
    finding = only(diagnose_series(rows, {}, patience=5), "stagnation")
    assert (finding.first_epoch, finding.last_epoch) == (19, 24)
    assert "improved again at epoch 25" in finding.evidence


def test_stagnation_falls_back_to_train_loss():
    rows = healthy_rows().drop(columns=["val_loss", "val_mae"])
    rows.loc[rows["epoch"] >= 20, "loss"] = rows.loc[19, "loss"] * 1.02
    finding = only(diagnose_series(rows, {}), "stagnation")
    assert "best loss" in finding.evidence
    assert (finding.first_epoch, finding.last_epoch) == (19, 29)


def test_nan_and_inf_found_in_each_series():
    rows = healthy_rows()
    rows.loc[7:, "loss"] = np.nan
    steps = healthy_steps()
    steps["train/grad_norm"][700] = (700, math.inf)

    findings = [f for f in diagnose_series(rows, steps, scheduler="cosine") if f.kind == "nan_inf"]
    assert len(findings) == 2, format_findings(findings)
    epoch_finding = next(f for f in findings if f.axis == "epoch")
    step_finding = next(f for f in findings if f.axis == "step")
    assert (epoch_finding.first_epoch, epoch_finding.last_epoch) == (7, 29)
    assert "'loss'" in epoch_finding.evidence
    assert "23 NaN" in epoch_finding.evidence
    assert (step_finding.first_epoch, step_finding.last_epoch) == (700, 700)
    assert "Inf" in step_finding.evidence


def test_missing_val_cells_are_not_nan_findings():
    rows = healthy_rows(validation_freq=3)
    assert rows["val_loss"].isna().sum() == 20
    assert "nan_inf" not in kinds(diagnose_series(rows, {}))


def test_constant_lr_with_scheduler():
    steps = healthy_steps()
    steps["train/learning_rate"] = [(step, 1e-3) for step, _ in steps["train/learning_rate"]]
    finding = only(diagnose_series(healthy_rows(), steps, scheduler="cosine"), "constant_lr")
    assert finding.axis == "step"
    assert (finding.first_epoch, finding.last_epoch) == (0, EPOCHS * STEPS_PER_EPOCH - 1)
    assert "1.00e-03" in finding.evidence

    assert diagnose_series(healthy_rows(), steps, scheduler="none") == []
    # A plateau scheduler keeps the rate while the loss still improves.
    assert diagnose_series(healthy_rows(), steps, scheduler="reduce_on_plateau") == []


def test_diagnose_series_rejects_bad_arguments():
    with pytest.raises(ValueError, match="patience"):
        diagnose_series(healthy_rows(), {}, patience=0)
    with pytest.raises(DataError, match="epoch"):
        diagnose_series(pd.DataFrame({"loss": [1.0]}), {})


def test_format_findings():
    assert "no problems found" in format_findings([])
    text = format_findings([
        Finding("overfitting", 10, 28, "val_loss rose.", "Stop earlier."),
        Finding("gradient_explosion", 600, 600, "grad norm 120.", "Clip.", axis="step"),
    ])
    assert "[overfitting] epochs 10-28: val_loss rose." in text
    assert "[gradient_explosion] step 600: grad norm 120." in text
    assert "advice: Clip." in text


# --- run folders ------------------------------------------------------------------------

METRICS_CSV = """epoch,loss,mae,mse,mean_correlation,val_loss,val_mae,val_mse,val_mean_correlation
0,0.5,0.3,0.5,0.1,0.55,0.31,0.55,0.1
1,0.4,0.25,0.4,0.2,,,,
2,0.3,0.2,0.3,0.3,nan,0.2,0.3,0.3
"""


def write_run(run_dir, csv_text=METRICS_CSV, scheduler="cosine", steps=30):
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text(csv_text)
    OmegaConf.save(OmegaConf.create({"training": {"scheduler": scheduler, "lr": 1e-3}}), run_dir / "config.yaml")
    writer = SummaryWriter(log_dir=str(run_dir / "logs"))
    for step in range(steps):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.add_scalar("train/learning_rate", 1e-3, step)
        writer.add_scalar("train/grad_norm", 1.0, step)
    for epoch in range(3):
        writer.add_scalar("train/mae", 0.3 - 0.05 * epoch, epoch)
    writer.close()
    return run_dir


def test_read_run_tables(tmp_path):
    rows, scalars, config = read_run(write_run(tmp_path / "run"))
    assert rows["epoch"].tolist() == [0, 1, 2]
    assert list(rows.columns)[:2] == ["epoch", "loss"]
    assert rows["val_loss"].isna().tolist() == [False, True, False]  # only the empty cell is missing
    assert math.isnan(rows["val_loss"].to_numpy(dtype=float, na_value=0.0)[2])  # the written nan stays
    assert scalars["train/loss"][:2] == [(0, 1.0), (1, 0.5)]
    assert len(scalars["train/loss"]) == 30
    assert scalars["train/mae"] == [(0, pytest.approx(0.3)), (1, pytest.approx(0.25)), (2, pytest.approx(0.2))]
    assert config["training"]["scheduler"] == "cosine"


def test_diagnose_run_end_to_end(tmp_path, capsys):
    run_dir = write_run(tmp_path / "run")
    findings = diagnose_run(run_dir)
    assert sorted(kinds(findings)) == ["constant_lr", "nan_inf"]
    nan_finding = only(findings, "nan_inf")
    assert (nan_finding.first_epoch, nan_finding.last_epoch) == (2, 2)
    assert "'val_loss'" in nan_finding.evidence

    assert main([str(run_dir)]) == 1
    assert "[constant_lr]" in capsys.readouterr().out


def test_diagnose_run_healthy_folder(tmp_path, capsys):
    csv_text = "epoch,loss,val_loss\n" + "".join(
        f"{epoch},{0.5 * 0.8 ** epoch:.6f},{0.55 * 0.8 ** epoch:.6f}\n" for epoch in range(10)
    )
    run_dir = write_run(tmp_path / "run", csv_text=csv_text, scheduler="none")
    assert diagnose_run(run_dir) == []
    assert main([str(run_dir)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_read_run_keeps_all_scalars(tmp_path):
    # The EventAccumulator default keeps at most 10,000 scalars per tag.
    run_dir = tmp_path / "run"
    writer = SummaryWriter(log_dir=str(run_dir / "logs"))
    for step in range(10_050):
        writer.add_scalar("train/loss", 1.0, step)
    writer.close()
    rows, scalars, config = read_run(run_dir)
    assert len(scalars["train/loss"]) == 10_050
    assert rows.empty
    assert config == {}


def test_read_run_resumed_steps_not_duplicated(tmp_path):
    run_dir = tmp_path / "run"
    first = SummaryWriter(log_dir=str(run_dir / "logs"))
    for step in range(10):
        first.add_scalar("train/loss", 1.0, step)
    first.close()
    # Resume from step 5: the second event file repeats steps 5-9.
    second = SummaryWriter(log_dir=str(run_dir / "logs"))
    for step in range(5, 12):
        second.add_scalar("train/loss", 2.0, step)
    second.close()

    _, scalars, _ = read_run(run_dir)
    assert [step for step, _ in scalars["train/loss"]] == list(range(12))
    assert [value for _, value in scalars["train/loss"]] == [1.0] * 5 + [2.0] * 7


def test_read_run_ignores_unterminated_row(tmp_path):
    run_dir = write_run(tmp_path / "run", csv_text=METRICS_CSV + "3,0.2,0.1")
    rows, _, _ = read_run(run_dir)
    assert rows["epoch"].tolist() == [0, 1, 2]


def test_read_run_not_a_run_folder(tmp_path):
    with pytest.raises(DataError, match="not a run folder"):
        read_run(tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_run(tmp_path / "missing")
    assert main([str(tmp_path)]) == 2


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("loss,val_loss\n0.1,0.2\n", "no 'epoch' column"),
        ("epoch,loss\n0,0.1\n1,abc\n", "line 3: column 'loss' has non-numeric value 'abc'"),
        ("epoch,loss\n0,0.1,0.3\n", "line 2: 3 cells"),
    ],
)
def test_read_run_bad_metrics_csv(tmp_path, csv_text, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text(csv_text)
    with pytest.raises(DataError, match=message):
        read_run(run_dir)


def test_read_run_bad_config(tmp_path):
    run_dir = write_run(tmp_path / "run")
    (run_dir / "config.yaml").write_text("training: [unclosed\n")
    with pytest.raises(DataError, match="config.yaml"):
        read_run(run_dir)


def test_all_nan_region_metric_is_no_finding():
    import pandas as pd

    from workbench.diagnose import diagnose_series

    rows = pd.DataFrame({
        "epoch": [0, 1, 2],
        "loss": [0.3, 0.2, 0.1],
        "val_loss": [0.3, 0.2, 0.1],
        "val_mae_eyes": [float("nan")] * 3,
    })
    kinds = [f.kind for f in diagnose_series(rows, {})]
    assert "nan_inf" not in kinds


def test_all_nan_loss_is_still_reported():
    import pandas as pd

    from workbench.diagnose import diagnose_series

    rows = pd.DataFrame({"epoch": [0, 1], "loss": [float("nan")] * 2, "val_loss": [float("nan")] * 2})
    kinds = [f.kind for f in diagnose_series(rows, {})]
    assert "nan_inf" in kinds


def test_divergence_and_collapse_found():
    import pandas as pd

    from workbench.diagnose import diagnose_series

    # The shape of a run with a learning rate far too high: loss jumps, then outputs saturate.
    rows = pd.DataFrame({
        "epoch": list(range(6)),
        "loss": [0.0286, 0.0328, 0.0328, 0.0328, 0.0328, 0.0328],
        "mean_correlation": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        "val_loss": [0.0329] * 6,
        "val_mean_correlation": [0.0] * 6,
    })
    findings = {f.kind: f for f in diagnose_series(rows, {})}
    assert findings["divergence"].first_epoch == 0
    assert findings["divergence"].last_epoch == 5
    assert "+15%" in findings["divergence"].evidence
    assert findings["collapse"].first_epoch == 0
    assert "val_mean_correlation" in findings["collapse"].evidence


def test_healthy_rows_have_no_divergence_or_collapse():
    import pandas as pd

    from workbench.diagnose import diagnose_series

    rows = pd.DataFrame({
        "epoch": list(range(6)),
        "loss": [0.05, 0.04, 0.035, 0.033, 0.032, 0.0315],
        "val_loss": [0.05, 0.045, 0.04, 0.038, 0.037, 0.0365],
        "val_mean_correlation": [0.2, 0.3, 0.35, 0.38, 0.4, 0.41],
    })
    kinds = {f.kind for f in diagnose_series(rows, {})}
    assert not kinds & {"divergence", "collapse"}
