"""``probe()``: run every check on a live model, then put everything back as it was."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from trainlint.diagnostics import Finding, Severity
from trainlint.probe import (
    amp,
    data,
    dependencies,
    distributed,
    eval_determinism,
    gradient_flow,
    grouping,
    initial_loss,
    labels,
    loss_shapes,
    outputs,
    overfit,
    registration,
    stats,
)
from trainlint.probe.batches import (
    BatchKind,
    BatchStructureError,
    Drawn,
    Forward,
    Runner,
    StepFn,
    batch_kind,
    batch_size,
    draw,
    fixed_batch,
    tensors,
    to_device,
    zero_inputs,
)
from trainlint.probe.codes import CHECKS, OPT_IN, finding
from trainlint.probe.errors import ModuleStack, describe, is_out_of_memory, raised
from trainlint.probe.gradient_flow import GradientRecorder
from trainlint.probe.optimizer_check import (
    ProbeOptimizer,
    check_optimizer,
    probe_optimizer,
    reference_optimizer,
)
from trainlint.probe.progress import step_progress
from trainlint.probe.report import CheckOutcome, ProbeReport, Status, outcome
from trainlint.probe.spy import GateStop, Lookup, LossCall, Spy, SpyLog
from trainlint.probe.state import ModelState, RngState, eval_mode
from trainlint.probe.task import UNKNOWN, Task, infer_dict_task, infer_task

GRADIENT_BATCHES = 3
CONFIRM_STEPS = 3
OUT_OF_MEMORY = "out of memory"
# Checks whose evidence comes from the first (spied) step.
FIRST_STEP = ("outputs", "loss_shapes", "registration", "initial_loss", "gradient_flow")


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

    ``checks`` restricts the run to some of ``data``, ``optimizer``, ``registration``,
    ``outputs``, ``loss_shapes``, ``initial_loss``, ``gradient_flow``, ``overfit_batch``,
    ``dependencies``, ``eval_determinism``, ``amp_overflow`` and ``distributed`` (the last
    runs by default only under torch.distributed). Errors raised by user code become
    findings; only misuse of ``probe`` itself raises.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if max_steps < 1:
        raise ValueError("max_steps must be at least 1")
    if amp_dtype not in (None, torch.float16, torch.bfloat16):
        raise ValueError("amp_dtype must be None, torch.float16 or torch.bfloat16")
    selected = _select(checks, distributed.active())
    session = _Session(model, loader, loss_fn, optimizer, selected, step_fn, amp_dtype, max_steps, seed)
    return session.run(_resolve_device(model, device))


def _select(checks: Iterable[str] | None, under_torchrun: bool) -> tuple[str, ...]:
    if checks is None:
        return tuple(name for name in CHECKS if under_torchrun or name not in OPT_IN)
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
        # Every local stage trains the wrapped module itself: no collective can hang when
        # ranks stop at different steps. Only the distributed stage uses the wrapper.
        self.wrapper = model
        model = distributed.unwrap(model)
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
        self.not_run: dict[str, str] = {}
        self.loss_task: Task = infer_task(loss_fn)
        self.task: Task = self.loss_task
        self.drawn = Drawn([])
        self.batches: list[Any] = []
        self.runner: Runner | None = None
        self.grad_norms: list[tuple[str, float]] = []
        self.update_ratios: dict[str, float] = {}
        self.curves: dict[str, list[float]] = {}
        self.outputs_finite = True
        self.modules_running = ModuleStack()
        self.shadow = registration.Shadow()
        self.known_modules: set[str] = set()
        self.optimizer: ProbeOptimizer = reference_optimizer(model)
        self.recorder = GradientRecorder(model)
        self.initial: initial_loss.Measured | None = None

    # ----------------------------------------------------------------- lifecycle
    def run(self, device: torch.device) -> ProbeReport:
        self.device = device
        blocking = registration.preflight(self.model)
        if blocking:  # nothing can run (or even be snapshotted): report before touching it
            self.findings = blocking
            self._skip_rest("the model cannot run (see registration)")
            return self._report()
        self.shadow = registration.scan(self.model)
        self.known_modules = {name for name, _ in self.model.named_modules()}
        rng = RngState(uses_cuda=device.type == "cuda")
        state = ModelState(self.model, self.shadow.modules.values(), self._loose_tensors())
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
            self.drawn = Drawn([])
            self.runner = None
            if out_of_memory and device.type == "cuda":
                torch.cuda.empty_cache()
            state.restore()
            rng.restore()
        return self._report()

    def _loose_tensors(self) -> list[torch.Tensor]:
        """Unregistered trainable tensors, and whatever the user's optimizer holds."""
        held = (
            [p for group in self.user_optimizer.param_groups for p in group["params"]]
            if self.user_optimizer is not None
            else []
        )
        return [*self.shadow.objects, *held]

    def _stages(self) -> bool:
        """Run the stages in order; True when one ran out of memory.

        Each stage turns the user-code errors it expects into precise findings; anything
        else raised inside a stage still becomes a finding (its ``Px99``), never a crash.
        """
        stages = (
            (self._data, "P190", "preparing the batches"),
            (self._optimizer, "P699", "rebuilding the optimizer"),
            (self._first_steps, "P599", "the gradient batches"),
            (self._dependencies, "P599", "the dependency check"),
            (self._eval_determinism, "P839", "the eval-mode forwards"),
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
        """Draw and check the batches; under torchrun, compare ranks whatever happened."""
        try:
            self._draw_and_check()
        finally:
            if self._wants("distributed"):
                self._distributed()

    def _distributed(self) -> None:
        """The same collectives on every rank, in the same order, before anything can stop."""
        runner = (
            Runner(self.wrapper, self.runner.kind, self.loss_fn, self.step_fn)
            if self.runner is not None
            else None
        )
        try:
            outcome = distributed.check(
                self.wrapper,
                self.loader,
                self.batches[0] if self.batches else None,
                (lambda model, batch: runner.loss_only(batch)) if runner is not None else None,
            )
        except Exception as exc:  # noqa: BLE001 - user code in the synchronised step
            self._add([raised("P999", "the distributed check", exc, "Fix the code at that line.", module=self.modules_running.pop_culprit())])
            return
        finally:
            self.state.detach_grads()
        self._add(outcome.findings)
        self.summaries["distributed"] = outcome.summary

    def _draw_and_check(self) -> None:
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
            self.drawn = draw(self.loader)
        except Exception as exc:  # noqa: BLE001 - user code
            raise self._fail(
                "P190", "iterating the loader", exc, "Fix the Dataset/collate code at that line."
            ) from None
        drawn = self.drawn.batches
        if self.drawn.one_shot:
            self._consumed(len(drawn))
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

    def _consumed(self, count: int) -> None:
        """A generator loses every batch the probe reads: say so, loudly and in the report."""
        message = (
            f"the loader is a one-shot iterator ({type(self.loader).__name__}): the probe "
            f"consumed {count} batch(es) that your training loop will not see"
        )
        hint = "Pass a re-iterable loader (a DataLoader, a list of batches), or a fresh iterator made for the probe."
        warnings.warn(f"trainlint probe: {message}. {hint}", UserWarning, stacklevel=4)
        self._add([finding("P112", message, hint, subject="loader", details={"consumed": count})])

    def _optimizer(self) -> None:
        self.optimizer, copy_findings = probe_optimizer(self.model, self.user_optimizer)
        found = check_optimizer(self.model, self.user_optimizer) + copy_findings
        self._add(found)
        self.summaries["optimizer"] = f"probe trains with {self.optimizer.description}"
        if any(f.code == "P606" for f in found):
            raise _Stop("the model has no trainable parameter")

    def _first_steps(self) -> None:
        """Forward/backward on the gradient batches; the first one runs under the spy."""
        if not any(self._wants(c) for c in FIRST_STEP):
            return
        runner = self._runner()
        try:
            with self.recorder.watching_calls():
                for index, batch in enumerate(self.batches[:GRADIENT_BATCHES]):
                    self.state.detach_grads()
                    loss = self._spied_step(runner, batch) if index == 0 else self._step(runner, batch)
                    if not self._wants("gradient_flow"):
                        break
                    self._backward(loss, index)
        except _Stop:
            self._judge_initial_loss(confirm=False)  # no more forwards after a failure
            raise
        self._judge_initial_loss(confirm=True)
        if self._wants("gradient_flow"):
            self._update_ratio()
            self._confirm_suspects()

    def _spied_step(self, runner: Runner, batch: Any) -> torch.Tensor:
        spy = Spy(
            self.modules_running,
            gate=self._gate_loss,
            lookup_gate=self._gate_lookup,
            shadow=self.shadow.tensors,
        )
        try:
            with spy:
                forward = self._forward(runner, batch)
                loss = self._loss(runner, forward)
        except GateStop as stop:
            self.modules_running.pop_culprit()
            self._add(stop.findings)
            raise _Stop("the data check found errors") from None
        self._inspect_first(batch, forward, loss, spy.log)
        return loss

    def _step(self, runner: Runner, batch: Any) -> torch.Tensor:
        return self._loss(runner, self._forward(runner, batch))

    def _forward(self, runner: Runner, batch: Any) -> Forward:
        try:
            return runner.forward(batch)
        except GateStop:
            raise
        except Exception as exc:  # noqa: BLE001 - user code
            raise self._fail(
                "P299",
                "the forward pass",
                exc,
                "Fix the model's forward (or step_fn) at that line; check input shapes and dtypes.",
            ) from None

    def _loss(self, runner: Runner, forward: Forward) -> torch.Tensor:
        try:
            return runner.loss(forward)
        except GateStop:
            raise
        except Exception as exc:  # noqa: BLE001 - user code
            raise self._fail(
                "P399",
                "the loss",
                exc,
                "Check output/target shapes and dtypes against what the loss expects.",
            ) from None

    def _named(self, task: Task) -> Task:
        """A spied call's task under the name the user gave the loss, when it is that loss."""
        if self.loss_task.direct and self.loss_task.kind is task.kind:
            return replace(task, loss_name=self.loss_task.loss_name)
        return task

    def _gate_loss(self, call: LossCall) -> None:
        """Targets out of range stop the run before the loss kernel sees them."""
        found = data.check_targets(call.target, call.input.detach(), self._named(call.task))
        errors = [f for f in found if f.severity is Severity.ERROR]
        self._add([f for f in found if f.severity is not Severity.ERROR])
        if errors:
            raise GateStop(errors)

    def _gate_lookup(self, lookup: Lookup) -> None:
        ids = lookup.ids
        if ids.dtype.is_floating_point or ids.numel() == 0:
            return
        low, high = int(ids.min()), int(ids.max())
        if low >= 0 and high < lookup.rows:
            return
        name = lookup.module or "embedding"
        raise GateStop(
            [
                finding(
                    "P110",
                    f"`{name}` is looked up with ids in [{low}, {high}] but has {lookup.rows} "
                    "rows: the lookup fails (a device-side assert on CUDA)",
                    "Make the ids match the table: vocabulary size, number of token types or "
                    "positions; map unknown and padding tokens to valid ids.",
                    subject=name,
                    details={"min": low, "max": high, "num_embeddings": lookup.rows},
                )
            ]
        )

    def _inspect_first(self, batch: Any, forward: Forward, loss: torch.Tensor, log: SpyLog) -> None:
        """Everything the first step showed: outputs, loss calls, registration, labels."""
        main = log.main_loss(loss)
        self.task = self._task(main, forward)
        self._outputs(forward, log)
        self._loss_shapes(log)
        self._registration(log)
        self._add(gradient_flow.zeroing_dropout(log.dropouts))
        if main is not None:
            self._label_scan(batch, main)
        self._initial_loss(forward, loss, main)

    def _task(self, main: LossCall | None, forward: Forward) -> Task:
        if main is not None:
            return self._named(main.task)
        if self._runner().kind is BatchKind.DICT:
            return infer_dict_task(_detached(forward.logits), forward.targets)
        return self.loss_task

    def _outputs(self, forward: Forward, log: SpyLog) -> None:
        logits = forward.logits
        if isinstance(logits, torch.Tensor) and logits.dtype.is_floating_point:
            self.outputs_finite = stats.all_finite(logits.detach())
        calls = [call for call in log.losses if call.task.kind.value != "unknown"]
        for call in calls:
            self._add(outputs.check_outputs(call.input, call.target, self._named(call.task)))
        if not calls and self._runner().kind is BatchKind.PAIR:
            self._add(outputs.check_outputs(logits, forward.targets, self.task))
        inspected = calls[0].input if calls else logits
        if not isinstance(inspected, torch.Tensor) or (not calls and self.task is UNKNOWN):
            if not any(f.check == "outputs" for f in self.findings):
                self.not_run["outputs"] = "no known loss function (cross-entropy, BCE, MSE...) was called"
            return
        producer = outputs.producer_name(inspected)
        where = f", checked at {calls[0].task.loss_name}" if calls else ""
        self.summaries["outputs"] = (
            f"outputs {tuple(inspected.shape)}"
            + (f" from {producer}" if producer else "")
            + where
        )

    def _loss_shapes(self, log: SpyLog) -> None:
        if not log.losses:
            self.not_run["loss_shapes"] = "no known loss function was called"
            return
        for call in log.losses:
            self._add(loss_shapes.check(replace(call, task=self._named(call.task))))
        names = sorted({call.task.loss_name for call in log.losses})
        self.summaries["loss_shapes"] = f"{len(log.losses)} loss call(s) ({', '.join(names)})"

    def _registration(self, log: SpyLog) -> None:
        found = registration.findings(self.shadow, log.shadow_used, self.user_optimizer)
        found += registration.created_in_forward(self.model, self.known_modules)
        self._add(found)
        count = sum(1 for _ in self.model.parameters())
        self.summaries["registration"] = (
            f"{count} registered parameter tensor(s); "
            + (f"{len(log.shadow_used)} unregistered used in forward" if log.shadow_used else "nothing unregistered used in forward")
        )

    def _label_scan(self, batch: Any, main: LossCall) -> None:
        """The first batch's labels passed the gate; check the other batches' too."""
        valid = labels.valid_range(replace(main, task=self._named(main.task)))
        path = labels.target_path(batch, self._runner().kind, main.target)
        if valid is None or path is None or not self._wants("data"):
            return
        drawn = [(i, t) for i, b in enumerate(self.batches[1:], 1) for p, t in tensors(b, "") if p == path]
        read = [(i, t) for i, p, t in self.drawn.scanned if p == path]
        found, where = labels.check(
            drawn + read, self.drawn.scanned_batches, valid, labels.dataset_labels(self.loader)
        )
        self._add(found)
        if where and "data" in self.summaries:
            self.summaries["data"] += f"; label range also checked on {where}"

    def _initial_loss(self, forward: Forward, loss: torch.Tensor, main: LossCall | None) -> None:
        if main is not None:
            logits, targets = _detached(main.input), main.target
        else:
            logits, targets = _detached(forward.logits), forward.targets
        self.initial = initial_loss.measure(float(loss.detach()), self.task, logits, targets)

    def _judge_initial_loss(self, confirm: bool) -> None:
        """After the gradient batches (whose module calls the recorder watches), before any
        update: a loss above the bar is measured again in eval mode, on the initial weights."""
        if self.initial is None or not self._wants("initial_loss"):
            return
        confirm = confirm and self.initial.excess
        eval_loss = self._eval_mode_loss(self.batches[0]) if confirm else None
        found, self.summaries["initial_loss"] = initial_loss.judge(self.initial, eval_loss)
        self._add(found)

    def _eval_mode_loss(self, batch: Any) -> float | None:
        """The batch's loss with running statistics and no dropout; None if that path fails
        (eval_determinism reports a broken eval path)."""
        try:
            with eval_mode(self.model), torch.no_grad():
                return float(self._runner().loss_only(batch))
        except Exception as exc:  # noqa: BLE001 - user code in its eval path
            self.modules_running.pop_culprit()
            if is_out_of_memory(exc):
                raise
            return None

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
        self.update_ratios = gradient_flow.update_ratios(
            self.recorder, held, self.state.host_copies(self.recorder.params)
        )
        self._add(gradient_flow.update_ratio_findings(self.update_ratios))

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

    def _dependencies(self) -> None:
        """Batch mixing and causal leaks; a forward that fails with differentiable inputs
        (which the user's training never sees) only means the check could not run."""
        if not self._wants("dependencies"):
            return
        try:
            outcome = dependencies.check(
                self._runner(), self.batches[0], self.modules_running, self.seed
            )
        except Exception as exc:  # noqa: BLE001 - user code meeting inputs that require grad
            self.modules_running.pop_culprit()
            if is_out_of_memory(exc):
                raise
            self.not_run["dependencies"] = f"the forward with differentiable inputs raised {describe(exc)}"
            return
        self._add(outcome.findings)
        if outcome.ran:
            self.summaries["dependencies"] = outcome.summary
        else:
            self.not_run["dependencies"] = outcome.summary.removeprefix("not run: ")

    def _eval_determinism(self) -> None:
        if not self._wants("eval_determinism"):
            return
        try:
            outcome = eval_determinism.check(
                self._runner(),
                self.batches[0],
                self.modules_running,
                lambda seed: self.rng.seed(seed, self.device),
                self.seed,
            )
        except Exception as exc:  # noqa: BLE001 - the user's eval path raised
            if is_out_of_memory(exc):
                raise
            if self._runner().kind is BatchKind.CUSTOM:
                # A training step_fn need not run in eval mode (a torchvision detector
                # returns detections there, not losses): no verdict on the model.
                self.modules_running.pop_culprit()
                self.not_run["eval_determinism"] = f"step_fn raised in eval mode ({describe(exc)})"
                return
            self._add(
                [
                    raised(
                        "P839",
                        "a forward in eval mode (model.eval())",
                        exc,
                        "Fix the eval-only code path at that line (it runs in validation and inference).",
                        module=self.modules_running.pop_culprit(),
                    )
                ]
            )
            return
        self._add(outcome.findings)
        self.summaries["eval_determinism"] = outcome.summary

    def _overfit(self) -> None:
        if not self._wants("overfit_batch"):
            return
        runner = self._runner()
        batch = fixed_batch(self.batches, self._runner().kind)
        try:
            runs = overfit.Runs(
                self._overfit_run(runner, batch, self.optimizer, "overfitting"),
                self.optimizer,
                known_cause=self._optimizer_cause(),
            )
            if overfit.needs_reference(runs):
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
        self.curves = {
            label: curve.losses
            for label, curve in (
                ("yours", runs.user),
                ("reference", runs.reference),
                ("zero-input control", runs.control),
            )
            if curve is not None
        }
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
            self.not_run["amp_overflow"] = "the float32 outputs are already non-finite"
            return
        runner = self._runner()
        pure_half = any(p.dtype == torch.float16 for p in self.model.parameters())
        batch = fixed_batch(self.batches, self._runner().kind)
        dtype = str(setup.dtype).replace("torch.", "")
        run = (
            "float16 autocast skipped on CPU (slow, no GPU kernels); float32 activations "
            "checked against the float16 range"
            if setup.emulated
            else f"{dtype} autocast on {self.device.type}"
        )
        try:
            overflow = amp.check_forward(runner, batch, setup, pure_half)
            self._add(overflow)
            summary = f"{run}: " + ("overflow" if overflow else "no overflow")
            if not (overflow or pure_half or setup.emulated) and setup.dtype == torch.float16:
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
            summary = f"{run}: could not run"
        self.summaries["amp_overflow"] = summary

    # ----------------------------------------------------------------- helpers
    def _runner(self) -> Runner:
        assert self.runner is not None, "the data stage sets the runner or stops the run"
        return self.runner

    def _report(self) -> ProbeReport:
        task = self.task.kind.value if self.task is not UNKNOWN else "unknown"
        return ProbeReport(
            findings=grouping.group(self.findings, CHECKS),
            checks=[self._verdict(name) for name in self.selected],
            device=str(self.device),
            task=f"{task} ({self.task.loss_name})",
            seed=self.seed,
            grad_norms=self.grad_norms,
            loss_curve=self.curves.get("yours", []),
            update_ratios=list(self.update_ratios.items()),
            curves=self.curves,
        )

    def _verdict(self, name: str) -> CheckOutcome:
        """A check with findings is judged by them, even when a later failure cut it short;
        a check that found nothing is "passed" only when it actually ran."""
        reason = self.skipped.get(name)
        has_findings = any(f.check == name for f in self.findings)
        if name in self.not_run and not has_findings:
            return CheckOutcome(name, Status.SKIPPED, f"not run: {self.not_run[name]}")
        summary = self.summaries.get(name) or (f"stopped: {reason}" if reason else "")
        if name in self.summaries or has_findings:
            return outcome(name, self.findings, summary)
        return CheckOutcome(name, Status.SKIPPED, f"not run: {reason or 'nothing to check'}")


def _detached(tensor: Any) -> torch.Tensor | None:
    return tensor.detach() if isinstance(tensor, torch.Tensor) else None
