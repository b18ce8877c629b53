"""The probe inside real frameworks: Lightning, Hugging Face Trainer, pytest, HTML reports."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ProbeRun
from probe_models.common import batches_of, classification_data, mlp, seeded
from torch import nn

from trainlint.probe.codes import CHECKS
from trainlint.probe.pytest_plugin import assert_trainable
from trainlint.probe.report import ProbeFailure, render

warnings.filterwarnings("ignore", category=DeprecationWarning)


# --------------------------------------------------------------------------- Lightning
def _lightning_module(softmax: bool) -> Any:
    pl = pytest.importorskip("lightning.pytorch")

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            out = self.net(x)
            if softmax:
                out = torch.softmax(out, dim=1)
            loss = nn.functional.cross_entropy(out, y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

        def train_dataloader(self) -> Any:
            x, y = classification_data(seed=60)
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)

    return pl, Classifier()


def _trainer(pl: Any, callback: Any, tmp_path: Path) -> Any:
    return pl.Trainer(
        max_steps=2,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=tmp_path,
    )


@pytest.mark.slow  # imports Lightning / transformers (a few seconds)
def test_lightning_callback_lets_a_healthy_module_train(tmp_path: Path) -> None:
    from trainlint.probe.lightning import ProbeCallback

    seeded(60)
    pl, module = _lightning_module(softmax=False)
    callback = ProbeCallback(max_steps=40, verbose=False)
    _trainer(pl, callback, tmp_path).fit(module)
    assert callback.report is not None and callback.report.ok
    assert callback.report.by_check("outputs") == []


@pytest.mark.slow  # imports Lightning / transformers (a few seconds)
def test_lightning_callback_fails_fast_on_softmax_in_training_step(tmp_path: Path) -> None:
    from trainlint.probe.lightning import ProbeCallback

    seeded(61)
    pl, module = _lightning_module(softmax=True)
    before = [p.detach().clone() for p in module.parameters()]
    callback = ProbeCallback(max_steps=20, verbose=False)
    with pytest.raises(ProbeFailure, match="P201"):
        _trainer(pl, callback, tmp_path).fit(module)
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))


# --------------------------------------------------------------------------- Hugging Face
def _hf_trainer(labels_offset: int, tmp_path: Path, callback: Any) -> Any:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=3,
    )
    torch.manual_seed(62)
    model = transformers.BertForSequenceClassification(config)
    gen = torch.Generator().manual_seed(62)
    data = [
        {"input_ids": torch.randint(0, 100, (12,), generator=gen), "labels": int(i % 3) + labels_offset}
        for i in range(32)
    ]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=8,
        report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True,
    )
    return transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])


@pytest.mark.slow  # imports Lightning / transformers (a few seconds)
def test_hf_trainer_callback_passes_a_healthy_model(tmp_path: Path) -> None:
    from trainlint.probe.huggingface import ProbeTrainerCallback

    callback = ProbeTrainerCallback(max_steps=30, verbose=False, checks=["data", "outputs", "initial_loss"])
    _hf_trainer(0, tmp_path, callback).train()
    assert callback.report is not None and callback.report.ok


@pytest.mark.slow  # imports Lightning / transformers (a few seconds)
def test_hf_trainer_callback_stops_on_labels_out_of_range(tmp_path: Path) -> None:
    from trainlint.probe.huggingface import ProbeTrainerCallback

    callback = ProbeTrainerCallback(max_steps=30, verbose=False, checks=["data", "outputs"])
    with pytest.raises(ProbeFailure, match="P103"):
        _hf_trainer(1, tmp_path, callback).train()


# --------------------------------------------------------------------------- pytest plugin
def test_trainlint_probe_fixture(trainlint_probe: Any) -> None:
    seeded(63)
    report = trainlint_probe(mlp(), batches_of(*classification_data(seed=63)), nn.CrossEntropyLoss(), max_steps=30)
    assert report.ok


def test_assert_trainable_fails_with_the_findings() -> None:
    seeded(64)
    model = nn.Sequential(mlp(), nn.Softmax(dim=1))
    with pytest.raises(AssertionError, match="P201"):
        assert_trainable(model, batches_of(*classification_data(seed=64)), nn.CrossEntropyLoss(), max_steps=20)


# --------------------------------------------------------------------------- display
def test_report_fits_80_columns_and_str_is_plain_text(probed: Callable[[str], ProbeRun]) -> None:
    report = probed("dropout_drops_everything").report
    text = str(report)
    assert "\x1b[" not in text and text == render(report, color=False, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert text.index("P510") < text.index("↳ P508")


def test_text_report_lists_a_few_consequences_and_counts_the_rest() -> None:
    from trainlint.probe.codes import finding
    from trainlint.probe.grouping import group
    from trainlint.probe.report import MAX_RELATED, ProbeReport

    lead = finding("P510", "dropout p=1", "fix", subject="drop")
    dead = [finding("P508", f"layer {i} is dead", "fix", subject=f"layer{i}") for i in range(MAX_RELATED + 3)]
    report = ProbeReport(findings=group([lead, *dead], CHECKS), checks=[], device="cpu", task="t", seed=0)
    text = str(report)
    assert text.count("↳ P508") == MAX_RELATED
    assert "↳ 3 more related: P508 ×3" in text


def test_html_report_is_self_contained_with_charts(tmp_path: Path, probed: Callable[[str], ProbeRun]) -> None:
    pytest.importorskip("matplotlib")
    report = probed("dropout_drops_everything").report
    path = tmp_path / "report.html"
    report.save_html(path)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page and "http" not in page.split("<svg", 1)[0]
    assert page.count("<svg") == 3  # loss curve, gradient norms, update ratios
    assert "Gradient norm per layer" in page and "dead units" in page
    assert "P510" in report._repr_html_()


def test_cli_writes_the_html_report(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from trainlint.probe.command import probe_command

    script = Path(__file__).resolve().parents[2] / "fixtures" / "probe_models" / "cli_script.py"
    out = tmp_path / "out.html"
    result = CliRunner().invoke(probe_command, [f"{script}:make", "--max-steps", "20", "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
