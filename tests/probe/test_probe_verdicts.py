"""Honest verdicts, grouped findings, and models or loaders the probe used to trip over."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from conftest import ProbeRun, assert_unchanged, capture, run_probe
from probe_models import Pipeline
from probe_models.common import batches_of, classification_data, mlp, seeded
from torch import nn

from trainlint.diagnostics import Severity
from trainlint.probe import probe


def _statuses(report: object) -> dict[str, str]:
    return {c.name: c.status.value for c in report.checks}  # type: ignore[attr-defined]


def test_diverging_learning_rate_is_never_passed() -> None:
    seeded(50)
    model = nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 5))
    x, y = classification_data(seed=50)
    optimizer = torch.optim.SGD(model.parameters(), lr=10.0)
    run = run_probe(Pipeline(model, batches_of(x, y), nn.CrossEntropyLoss(), optimizer))
    assert _statuses(run.report)["overfit_batch"] != "passed"
    assert {f.code for f in run.report.by_check("overfit_batch")} & {"P401", "P402"}
    assert_unchanged(run.before, run.after)


def test_a_spike_the_reference_does_not_have_is_a_warning() -> None:
    seeded(51)
    model = mlp()
    x, y = classification_data(seed=51)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.5, momentum=0.9)
    report = run_probe(Pipeline(model, batches_of(x, y), nn.CrossEntropyLoss(), optimizer)).report
    overfit = report.by_check("overfit_batch")
    assert overfit and overfit[0].code in ("P401", "P402")
    assert _statuses(report)["overfit_batch"] != "passed"


class Jittery(nn.Module):
    """Heavy dropout and stochastic depth: a noisy curve that still goes down."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(20, 64)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(64, 64), nn.GELU()) for _ in range(3))
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            keep = (torch.rand(h.shape[0], 1) > 0.3).float() if self.training else 1.0
            h = h + keep * block(h)
        return self.head(self.drop(h))


def test_stochastic_jitter_is_not_a_learning_rate_problem() -> None:
    seeded(52)
    x, y = classification_data(seed=52)
    model = Jittery()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    report = run_probe(
        Pipeline(model, batches_of(x, y), nn.CrossEntropyLoss(), optimizer), max_steps=60
    ).report
    assert not report.by_code("P402") and not report.by_code("P401")
    assert report.ok


def test_outputs_check_that_sees_no_known_loss_says_it_did_not_run() -> None:
    seeded(53)
    x, y = classification_data(seed=53)
    model = mlp()

    def step(m: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        logp = torch.log_softmax(m(batch[0]), dim=1)  # a hand-written NLL: no known loss call
        return -logp.gather(1, batch[1][:, None]).mean()

    report = probe(model, batches_of(x, y), step_fn=step, max_steps=30)
    outputs = next(c for c in report.checks if c.name == "outputs")
    assert outputs.status.value == "skipped" and outputs.summary.startswith("not run")


def test_one_bug_leads_and_its_consequences_follow(probed: Callable[[str], ProbeRun]) -> None:
    report = probed("dropout_drops_everything").report
    lead, *rest = report.findings
    assert lead.code == "P510" and lead.subject == "2"
    assert rest and all(f.details.get("related_to") == "P510 2" for f in rest)
    text = str(report)
    assert text.index("P510") < text.index("P508")


def test_one_dropout_config_is_one_finding() -> None:
    """``hidden_dropout_prob=1.0`` reaches every dropout layer: one P510 names them all."""
    seeded(40)
    model = nn.Sequential(
        nn.Linear(20, 32), nn.Dropout(1.0), nn.ReLU(), nn.Linear(32, 32), nn.Dropout(1.0), nn.Linear(32, 5)
    )
    report = probe(model, batches_of(*classification_data(seed=40)), nn.CrossEntropyLoss(), max_steps=10)
    (found,) = report.by_code("P510")
    assert found.subject == "1" and found.details["modules"] == ["1", "4"]
    assert "2 dropout layers" in found.message


def test_meta_device_layer_is_a_finding_not_an_exception() -> None:
    model = mlp()
    model[2] = nn.Linear(64, 64, device="meta")
    before = [p for p in model.parameters()]
    report = probe(model, batches_of(*classification_data()), nn.CrossEntropyLoss())
    (found,) = report.by_code("P801")
    assert found.subject == "2" and not report.ok
    assert [p for p in model.parameters()] == before


def test_uninitialised_lazy_module_is_a_finding_not_an_exception() -> None:
    model = nn.Sequential(nn.LazyLinear(32), nn.ReLU(), nn.Linear(32, 5))
    report = probe(model, batches_of(*classification_data()), nn.CrossEntropyLoss())
    (found,) = report.by_code("P802")
    assert found.subject == "0"
    assert isinstance(model[0], nn.LazyLinear)  # still uninitialised: the probe ran nothing


class GrowsInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(20, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "head"):
            self.head = nn.Linear(16, 5)  # created on the first call
        return self.head(torch.relu(self.fc(x)))


def test_submodule_created_in_forward_is_reported_and_removed() -> None:
    seeded(54)
    model = GrowsInForward()
    optimizer = torch.optim.Adam(model.parameters())
    before = capture(model, optimizer)
    report = probe(model, batches_of(*classification_data(seed=54)), nn.CrossEntropyLoss(), optimizer, max_steps=20)
    assert [f.subject for f in report.by_code("P805")] == ["head"]
    assert not hasattr(model, "head") and "head" not in dict(model.named_modules())
    assert_unchanged(before, capture(model, optimizer))


def test_generator_loader_is_warned_about() -> None:
    seeded(55)
    batches = batches_of(*classification_data(seed=55))
    generator = (batch for batch in batches)
    with pytest.warns(UserWarning, match="one-shot iterator"):
        report = probe(mlp(), generator, nn.CrossEntropyLoss(), max_steps=10)
    (found,) = report.by_code("P112")
    consumed = found.details["consumed"]
    assert found.severity is Severity.WARNING and consumed == 3
    assert len(list(generator)) == len(batches) - consumed  # nothing read beyond what it says


def test_list_loader_is_not_warned_about(recwarn: pytest.WarningsRecorder) -> None:
    probe(mlp(), batches_of(*classification_data()), nn.CrossEntropyLoss(), max_steps=5)
    assert not [w for w in recwarn if "one-shot" in str(w.message)]


def test_unregistered_tensor_in_the_optimizer_is_restored_and_reported() -> None:
    seeded(56)

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(20, 5)
            self.scale = torch.ones(5, requires_grad=True)  # not an nn.Parameter

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) * self.scale

    model = Scaled()
    optimizer = torch.optim.Adam([*model.parameters(), model.scale], lr=1e-2)
    scale = model.scale.detach().clone()
    report = probe(model, batches_of(*classification_data(seed=56)), nn.CrossEntropyLoss(), optimizer, max_steps=20)
    assert [f.subject for f in report.by_code("P804")] == ["scale"]
    assert torch.equal(model.scale, scale) and model.scale.grad is None


def test_functional_dropout_with_training_flag_is_fine() -> None:
    seeded(57)

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(20, 64), nn.Linear(64, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.dropout(torch.relu(self.fc1(x)), 0.2, training=self.training)
            return self.fc2(h)

    report = run_probe(Pipeline(Gated(), batches_of(*classification_data(seed=57)), nn.CrossEntropyLoss())).report
    assert not report.by_check("eval_determinism")
    assert _statuses(report)["eval_determinism"] == "passed"


def test_a_list_of_raw_images_is_one_input_scale_finding() -> None:
    """A step_fn batch of per-sample images: one P106 for the list, none for pixel boxes."""
    from trainlint.probe.batches import BatchKind
    from trainlint.probe.data import check_inputs

    gen = torch.Generator().manual_seed(41)
    images = [torch.rand(3, 8, 8, generator=gen) * 255 for _ in range(3)]
    targets = [{"boxes": torch.tensor([[10.0, 20.0, 90.0, 120.0]])} for _ in range(3)]
    (found,) = check_inputs((images, targets), BatchKind.CUSTOM, nn.Linear(2, 2))
    assert found.code == "P106" and found.subject == "inputs[0][0]"
    assert found.details["tensors"] == 3 and "2 more `inputs[0][i]`" in found.message
