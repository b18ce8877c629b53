"""``probe()``: run every check on a live model, then put everything back as it was."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from trainlint.diagnostics import Finding, Severity
from trainlint.probe import amp, data, gradient_flow, initial_loss, outputs, overfit, stats
from trainlint.probe.batches import (
    BatchKind,
    BatchStructureError,
    Forward,
    Runner,
    StepFn,
    batch_kind,
    batch_size,
    draw,
    fixed_batch,
    split,
    to_device,
    zero_inputs,
)
from trainlint.probe.codes import CHECKS, finding
from trainlint.probe.errors import ModuleStack, is_out_of_memory, raised
from trainlint.probe.gradient_flow import GradientRecorder
from trainlint.probe.optimizer_check import (
    ProbeOptimizer,
    check_optimizer,
    probe_optimizer,
    reference_optimizer,
)
from trainlint.probe.progress import step_progress
from trainlint.probe.report import CheckOutcome, ProbeReport, Status, outcome
from trainlint.probe.state import ModelState, RngState
from trainlint.probe.task import UNKNOWN, Task, infer_dict_task, infer_task

GRADIENT_BATCHES = 3
CONFIRM_STEPS = 3
OUT_OF_MEMORY = "out of memory"


class _Stop(Exception):
    """Ends the remaining model-running stages (data errors, a broken forward, OOM)."""


def probe(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: Any = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    device: str | torch.device | None = None,
    checks: Iterable[str] | None = None,
    step_fn: StepFn | None = None,
    amp_dtype: torch.dtype | None = None,
    max_steps: int = 200,
    seed: int = 0,
) -> ProbeReport:
    """Probe a training pipeline for silent bugs; the model, optimizer and RNGs are left as found.

    ``checks`` restricts the run to some of ``initial_loss``, ``overfit_batch``,
    ``gradient_flow``, ``amp_overflow``, ``data``, ``outputs``, ``optimizer``. Errors raised
    by user code become findings; only misuse of ``probe`` itself raises.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if max_steps < 1:
        raise ValueError("max_steps must be at least 1")
    if amp_dtype not in (None, torch.float16, torch.bfloat16):
        raise ValueError("amp_dtype must be None, torch.float16 or torch.bfloat16")
    session = _Session(
        model, loader, loss_fn, optimizer, _select(checks), step_fn, amp_dtype, max_steps, seed
    )
    return session.run(_resolve_device(model, device))


def _select(checks: Iterable[str] | None) -> tuple[str, ...]:
    if checks is None:
        return CHECKS
    chosen = set([checks] if isinstance(checks, str) else checks)
    unknown = chosen - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; choose from {list(CHECKS)}")
    return tuple(name for name in CHECKS if name in chosen)


def _resolve_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        resolved = torch.device(device)
        if resolved.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {resolved} requested but CUDA is not available")
        return resolved
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


class _Session:
    """One probe run: the stages share the drawn batches, the runner and the findings."""

    def __init__(
        self,
        model: nn.Module,
        loader: Iterable[Any],
        loss_fn: Any,
        optimizer: torch.optim.Optimizer | None,
        selected: tuple[str, ...],
        step_fn: StepFn | None,
        amp_dtype: torch.dtype | None,
        max_steps: int,
        seed: int,
    ) -> None:
        self.model = model
        self.loader = loader
        self.loss_fn = loss_fn
        self.user_optimizer = optimizer
        self.selected = selected
        self.step_fn = step_fn
        self.amp_dtype = amp_dtype
        self.max_steps = max_steps
        self.seed = seed
        self.device = torch.device("cpu")
        self.findings: list[Finding] = []
        self.summaries: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.task: Task = infer_task(loss_fn)
        self.batches: list[Any] = []
        self.runner: Runner | None = None
        self.optimizer: ProbeOptimizer = reference_optimizer(model)
        self.recorder = GradientRecorder(model)
        self.grad_norms: list[tuple[str, float]] = []
        self.curve: list[float] = []
        self.outputs_finite = True
        self.modules_running = ModuleStack()

    # ----------------------------------------------------------------- lifecycle
    def run(self, device: torch.device) -> ProbeReport:
        self.device = device
        rng = RngState(uses_cuda=device.type == "cuda")
        state = ModelState(self.model)
        self.state = state
        self.rng = rng
        out_of_memory = False
        try:
            state.detach_grads()
            if not self.model.training:
                self.model.train()  # probe training, not inference; per-module flags come back later
            with torch.enable_grad(), self.modules_running.watching(self.model):
                out_of_memory = self._stages()
        finally:
            self.batches = []
            self.runner = None
            if out_of_memory and device.type == "cuda":
                torch.cuda.empty_cache()
            state.restore()
            rng.restore()
        return self._report()

    def _stages(self) -> bool:
        """Run the stages in order; True when one ran out of memory.

        Each stage turns the user-code errors it expects into precise findings; anything
        else raised inside a stage still becomes a finding (its ``Px99``), never a crash.
        """
        stages = (
            (self._data, "P190", "preparing the batches"),
            (self._optimizer, "P699", "rebuilding the optimizer"),
            (self._first_steps, "P599", "the gradient batches"),
            (self._overfit, "P499", "overfitting one batch"),
            (self._gradient_verdict, "P599", "judging the gradients"),
            (self._amp, "P799", "the autocast run"),
        )
        for stage, code, doing in stages:
            try:
                self._restart()
                stage()
            except _Stop as stop:
                reason = str(stop)
            except Exception as exc:  # noqa: BLE001 - user code the stage did not anticipate
                reason = str(self._fail(code, doing, exc, "Fix the code at that line."))
            else:
                continue
            self._skip_rest(reason)
            return reason == OUT_OF_MEMORY
        return False

    def _restart(self) -> None:
        """Initial weights, no grads, seeded RNGs: every stage starts from the same point."""
        self.state.reset_values()
        self.state.detach_grads()
        self.rng.seed(self.seed, self.device)

    def _skip_rest(self, reason: str) -> None:
        for name in self.selected:
            if name not in self.summaries:
                self.skipped.setdefault(name, reason)

    def _wants(self, check: str) -> bool:
        return check in self.selected

    def _add(self, items: list[Finding]) -> None:
        """Keep findings of selected checks only, once per (code, subject)."""
        seen = {(f.code, f.subject) for f in self.findings}
        for item in items:
            if self._wants(item.check) and (item.code, item.subject) not in seen:
                self.findings.append(item)
                seen.add((item.code, item.subject))

    def _fail(self, code: str, doing: str, exc: BaseException, hint: str) -> _Stop:
        """Record user code that raised; the caller raises the returned stop."""
        self._add([raised(code, doing, exc, hint, module=self.modules_running.pop_culprit())])
        if is_out_of_memory(exc):
            return _Stop(OUT_OF_MEMORY)
        return _Stop(f"{doing} raised")

    # ----------------------------------------------------------------- stages
    def _data(self) -> None:
        try:
            self.model.to(self.device)
        except Exception as exc:  # noqa: BLE001 - custom .to() overrides, out of memory
            raise self._fail(
                "P299",
                f"moving the model to {self.device}",
                exc,
                "Free device memory or probe on another device.",
            ) from None
        try:
            drawn = draw(self.loader)
        except Exception as exc:  # noqa: BLE001 - user code
            raise self._fail(
                "P190", "iterating the loader", exc, "Fix the Dataset/collate code at that line."
            ) from None
        if not drawn:
            self._add(
                [
                    finding(
                        "P191",
                        "the loader produced no batch",
                        "Check the dataset length, filters and drop_last with a batch larger than the dataset.",
                        subject="loader",
                    )
                ]
            )
            raise _Stop("the loader is empty")
        try:
            kind = batch_kind(drawn[0], self.step_fn)
            self.runner = Runner(self.model, kind, self.loss_fn, self.step_fn)
        except BatchStructureError as exc:
            code = "P193" if "loss_fn" in str(exc) else "P192"
            self._add(
                [
                    finding(
                        code,
                        str(exc),
                        "Pass loss_fn for (inputs, targets) batches, or step_fn(model, batch) -> loss for anything else.",
                        subject="batch",
                    )
                ]
            )
            raise _Stop("the batch structure is not understood") from None
        try:
            self.batches = [to_device(b, self.device) for b in drawn]
        except Exception as exc:  # noqa: BLE001 - custom batch types may refuse .to()
            raise self._fail(
                "P190",
                f"moving the batch to {self.device}",
                exc,
                "Make batches tensors or nested tuples/lists/dicts of tensors.",
            ) from None
        found = [f for b in self.batches for f in data.check_inputs(b, kind, self.model)]
        self._add(found)
        sizes = [batch_size(b) for b in self.batches]
        self.summaries["data"] = (
            f"{len(self.batches)} batch(es) of {sizes[0]} ({kind.value} batches)"
        )
        if any(f.severity is Severity.ERROR for f in found):
            raise _Stop("the data check found errors")

    def _optimizer(self) -> None:
        self.optimizer, copy_findings = probe_optimizer(self.model, self.user_optimizer)
        found = check_optimizer(self.model, self.user_optimizer) + copy_findings
        self._add(found)
        self.summaries["optimizer"] = f"probe trains with {self.optimizer.description}"
        if any(f.code == "P606" for f in found):
            raise _Stop("the model has no trainable parameter")

    def _first_steps(self) -> None:
        """Forward/backward on the gradient batches; the first also feeds outputs and initial_loss."""
        if not any(self._wants(c) for c in ("outputs", "initial_loss", "gradient_flow")):
            return
        runner = self._runner()
        with self.recorder.watching_calls():
            for index, batch in enumerate(self.batches[:GRADIENT_BATCHES]):
                self.state.detach_grads()
                loss = self._checked_step(runner, batch, first=index == 0)
                if not self._wants("gradient_flow"):
                    return
                self._backward(loss, index)
        self._update_ratio()
        self._confirm_suspects()

    def _checked_step(self, runner: Runner, batch: Any, first: bool) -> torch.Tensor:
        """Forward, the pre-loss target check (the data gate), then the loss."""
        if runner.kind is BatchKind.DICT:
            # Dict models compute their loss inside forward: check the labels before that.
            peeked = runner.peek_logits(batch)
            if peeked is not None:
                self._gate_targets(Forward(peeked, split(batch, runner.kind)[1]), first)
        try:
            forward = runner.forward(batch)
        except Exception as exc:  # noqa: BLE001 - user code
            raise self._fail(
                "P299",
                "the forward pass",
                exc,
                "Fix the model's forward (or step_fn) at that line; check input shapes and dtypes.",
            ) from None
        if runner.kind is BatchKind.PAIR:
            self._gate_targets(forward, first)
        if first:
            self._inspect_outputs(forward)
        try:
            loss = runner.loss(forward)
        except Exception as exc:  # noqa: BLE001 - user code
            raise self._fail(
                "P399",
                "the loss",
                exc,
                "Check output/target shapes and dtypes against what the loss expects.",
            ) from None
        if first:
            self._initial_loss(forward, loss)
        return loss

    def _gate_targets(self, forward: Forward, first: bool) -> None:
        if first and self._runner().kind is BatchKind.DICT:
            self.task = infer_dict_task(forward.logits, forward.targets)
        found = data.check_targets(forward.targets, _detached(forward.logits), self.task)
        self._add(found)
        if any(f.severity is Severity.ERROR for f in found):
            raise _Stop("the data check found errors")

    def _inspect_outputs(self, forward: Forward) -> None:
        logits = forward.logits
        if isinstance(logits, torch.Tensor) and logits.dtype.is_floating_point:
            self.outputs_finite = stats.all_finite(logits.detach())
        if self.runner is not None and self.runner.kind is BatchKind.PAIR:
            self._add(outputs.check_outputs(logits, forward.targets, self.task))
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else "n/a"
        producer = outputs.producer_name(logits) if isinstance(logits, torch.Tensor) else None
        self.summaries["outputs"] = f"outputs {shape}" + (f" from {producer}" if producer else "")

    def _initial_loss(self, forward: Forward, loss: torch.Tensor) -> None:
        found, summary = initial_loss.check_initial_loss(
            float(loss.detach()), self.task, _detached(forward.logits), forward.targets
        )
        self._add(found)
        self.summaries["initial_loss"] = summary

    def _backward(self, loss: torch.Tensor, index: int) -> None:
        if not loss.requires_grad:
            self._add(
                [
                    finding(
                        "P509",
                        "the loss does not require grad: no trainable parameter influences it, so backward() fails and nothing trains",
                        "Remove torch.no_grad()/.detach()/.item() on the path to the loss, and make sure some parameters require grad.",
                        subject="loss",
                    )
                ]
            )
            raise _Stop("the loss does not depend on trainable parameters")
        try:
            loss.backward()
        except Exception as exc:  # noqa: BLE001 - user code (custom autograd functions, hooks)
            raise self._fail(
                "P599",
                f"backward on batch {index}",
                exc,
                "Fix the custom backward/hook at that line.",
            ) from None
        self.recorder.record(gradient_batch=True)

    def _update_ratio(self) -> None:
        """One optimizer step on the last gradient batch, measured against the host snapshot."""
        if all(rate == 0 for rate in self.optimizer.learning_rates):
            return  # P603 already says it; a ratio of 0 adds nothing
        with self.optimizer.fresh() as opt:
            held = {id(p) for group in opt.param_groups for p in group["params"]}
            opt.step()
        ratios = gradient_flow.update_ratios(
            self.recorder, held, self.state.host_copies(self.recorder.params)
        )
        self._add(gradient_flow.update_ratio_findings(ratios))

    def _confirm_suspects(self) -> None:
        """A few reference steps before judging "no/zero gradient" or "dead units".

        Zero-initialised paths (a zero last layer, LoRA's B, ReZero gates) block gradients
        only until the first update; overfitting later adds more evidence when it runs.
        """
        if self.recorder.suspects_cleared():
            return
        self._restart()
        runner = self._runner()
        with reference_optimizer(self.model).fresh() as opt, self.recorder.watching_calls():
            for _ in range(CONFIRM_STEPS):
                opt.zero_grad(set_to_none=True)
                loss = runner.loss_only(self.batches[0])
                loss.backward()
                self.recorder.record(gradient_batch=False)
                opt.step()

    def _overfit(self) -> None:
        if not self._wants("overfit_batch"):
            return
        runner = self._runner()
        batch = fixed_batch(self.batches)
        try:
            runs = overfit.Runs(
                self._overfit_run(runner, batch, self.optimizer, "overfitting"),
                self.optimizer,
                known_cause=self._optimizer_cause(),
            )
            self.curve = runs.user.losses
            if not runs.user.passed and runs.user.judgeable and not self.optimizer.is_reference:
                runs.reference = self._overfit_run(
                    runner, batch, reference_optimizer(self.model), "reference run"
                )
            model_curve = runs.reference or runs.user
            zeros = zero_inputs(batch, runner.kind)
            if not model_curve.passed and model_curve.judgeable and zeros is not None:
                runs.control = self._overfit_run(
                    runner, zeros, reference_optimizer(self.model), "zero-input control"
                )
        except _Stop:
            raise
        except Exception as exc:  # noqa: BLE001 - user code
            raise self._fail(
                "P499",
                "overfitting one batch",
                exc,
                "Fix the code at that line; it ran fine on the first steps, so look for state that changes between steps.",
            ) from None
        self._add(overfit.judge(runs, self.max_steps))
        self.summaries["overfit_batch"] = overfit.summary(runs)

    def _optimizer_cause(self) -> str | None:
        codes = {f.code for f in self.findings}
        if "P603" in codes:
            return "its learning rate is 0 (P603)"
        if "P601" in codes:
            return "it does not hold all trainable parameters (P601)"
        return None

    def _overfit_run(
        self, runner: Runner, batch: Any, optimizer: ProbeOptimizer, label: str
    ) -> overfit.Curve:
        self._restart()
        with step_progress(label, self.max_steps) as on_step:
            return overfit.run(
                runner, batch, optimizer, self.task, self.max_steps, self._union_grads, on_step
            )

    def _union_grads(self) -> None:
        """Overfitting steps add to the gradient evidence until nothing is suspicious."""
        if self._wants("gradient_flow") and not self.recorder.suspects_cleared():
            self.recorder.record(gradient_batch=False)

    def _gradient_verdict(self) -> None:
        if not self._wants("gradient_flow") or not self.recorder.evidence.got_grad:
            return
        found, self.grad_norms = gradient_flow.findings(self.recorder)
        self._add(found)
        ev = self.recorder.evidence
        self.summaries["gradient_flow"] = (
            f"{len(ev.got_grad)}/{len(ev.names)} trainable tensors got gradients over "
            f"{min(len(self.batches), GRADIENT_BATCHES)} batch(es)"
        )

    def _amp(self) -> None:
        if not self._wants("amp_overflow"):
            return
        setup = amp.AmpSetup(self.device, self.amp_dtype)
        self._add(amp.half_adam_eps(self.model, self.user_optimizer))
        if not self.outputs_finite:
            self.summaries["amp_overflow"] = "not run: the float32 outputs are already non-finite"
            return
        runner = self._runner()
        pure_half = any(p.dtype == torch.float16 for p in self.model.parameters())
        batch = fixed_batch(self.batches)
        dtype = str(setup.dtype).replace("torch.", "")
        try:
            overflow = amp.check_forward(runner, batch, setup, pure_half)
            self._add(overflow)
            summary = f"{dtype} autocast on {self.device.type}: " + (
                "overflow" if overflow else "no overflow"
            )
            if not overflow and not pure_half and setup.dtype == torch.float16:
                self._restart()
                scaler_findings, scaler_summary = amp.check_scaler(
                    runner, batch, setup, self.optimizer, self.max_steps
                )
                self._add(scaler_findings)
                summary += f"; {scaler_summary}"
        except Exception as exc:  # noqa: BLE001 - user code under autocast
            self._add([amp.autocast_error(exc, setup, self.modules_running.pop_culprit())])
            if is_out_of_memory(exc):
                raise _Stop(OUT_OF_MEMORY) from None
            summary = f"{dtype} autocast on {self.device.type}: could not run"
        self.summaries["amp_overflow"] = summary

    # ----------------------------------------------------------------- helpers
    def _runner(self) -> Runner:
        assert self.runner is not None, "the data stage sets the runner or stops the run"
        return self.runner

    def _report(self) -> ProbeReport:
        task = self.task.kind.value if self.task is not UNKNOWN else "unknown"
        return ProbeReport(
            findings=sorted(
                self.findings, key=lambda f: (CHECKS.index(f.check), -f.severity.rank, f.code)
            ),
            checks=[self._verdict(name) for name in self.selected],
            device=str(self.device),
            task=f"{task} ({self.task.loss_name})",
            seed=self.seed,
            grad_norms=self.grad_norms,
            loss_curve=self.curve,
        )

    def _verdict(self, name: str) -> CheckOutcome:
        """A check with findings is judged by them even when a later failure cut it short."""
        reason = self.skipped.get(name)
        summary = self.summaries.get(name) or (f"stopped: {reason}" if reason else "")
        if name in self.summaries or any(f.check == name for f in self.findings):
            return outcome(name, self.findings, summary)
        return CheckOutcome(name, Status.SKIPPED, f"skipped: {reason or 'nothing to check'}")


def _detached(tensor: Any) -> torch.Tensor | None:
    return tensor.detach() if isinstance(tensor, torch.Tensor) else None
