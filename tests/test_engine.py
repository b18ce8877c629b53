"""The training-state engine, through its own API: states before ops and statements, call
binding per call site, loops, branches and library-run loops. Rules build on these
answers, so they are tested first and directly."""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import pytest

from trainlint.analysis.engine import Engine, Occurrence
from trainlint.analysis.ir import OpKind
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.project import Project
from trainlint.analysis.data import data_sources, is_loader
from trainlint.analysis.training import grads, model_calls, modes_at
from trainlint.analysis.uses import variable_uses
from trainlint.analysis.values import Evaluator
from trainlint.deep import run_deep


def engine_for(tmp_path: Path, **files: str) -> tuple[Engine, dict[str, ModuleModel]]:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'example'\n")
    project = Project()
    engine = Engine(Evaluator(project))
    models = {}
    for name, text in files.items():
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(text))
        model = project.load(path)
        assert model is not None
        models[name] = model
    return engine, models


def line(module: ModuleModel, node: cst.CSTNode) -> int | None:
    return module.line_of(node)


def steps(engine: Engine, module: ModuleModel) -> list[Occurrence]:
    return engine.occurrences(module, OpKind.STEP)


def test_helper_parameters_are_bound_per_call_site(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        import torch
        opt_d = torch.optim.Adam(net_d.parameters())
        opt_g = torch.optim.Adam(net_g.parameters())

        def update(opt, loss):
            loss.backward()
            opt.step()

        update(opt_d, loss_d)
        update(opt_g, loss_g)
        """,
    )
    module = m["train"]
    engine.analyse(module)
    labels = {engine.key(o.op.target, module, o.frame).label for o in engine.all_occurrences(OpKind.STEP)}
    assert labels == {"opt_d", "opt_g"}  # never a merge of both call sites


def test_stale_gradients_show_on_later_iterations_only(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        import torch
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
        """,
    )
    module = m["train"]
    by_iteration = {o.state.loops[-1].first: grads(engine, o) for o in steps(engine, module)}
    assert not any(g.applied for g in by_iteration[True])  # the first step applies fresh gradients
    assert any(g.applied is not None and g.pending for g in by_iteration[False])  # later ones add to applied ones


def test_a_counter_test_is_known_on_the_first_iteration(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        import torch
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for batch in loader:
            for i, micro in enumerate(batch):
                if i == 0:
                    optimizer.zero_grad()
                model(micro).backward()
            optimizer.step()
        """,
    )
    module = m["train"]
    assert all(not (g.applied and g.pending) for o in steps(engine, module) for g in grads(engine, o))


def test_settings_keep_branch_sides_apart_across_iterations(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        import torch
        scaler = torch.amp.GradScaler("cuda")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:
            loss = model(x, y)
            if use_amp:
                optimizer.zero_grad()
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        """,
    )
    module = m["train"]
    plain = [o for o in steps(engine, module) if o.op.via is None]
    assert plain and all(("use_amp", False) in {(t, v) for t, v, _ in o.state.facts} for o in plain)
    # The fp32 side never clears: its later iterations see applied gradients, whatever the AMP side does.
    assert any(g.applied is not None and g.pending for o in plain for g in grads(engine, o))


def test_helpers_testing_the_same_argument_share_one_fact(tmp_path: Path) -> None:
    # open_clip's shape: backward() and finish() each branch on ``scaler is not None``.
    engine, m = engine_for(
        tmp_path,
        train="""
        def backward(loss, scaler):
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()

        def finish(optimizer, scaler):
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()

        def train(model, loader, optimizer, scaler):
            for x in loader:
                optimizer.zero_grad()
                backward(model(x), scaler)
                finish(optimizer, scaler)
        """,
    )
    module = m["train"]
    plain = [o for o in steps(engine, module) if o.op.via is None]
    facts = [{value for text, value, _ in o.state.facts if text.endswith(":scaler")} for o in plain]
    # The plain step runs only where the caller's ``scaler`` is None (set by backward()).
    assert plain and facts and all(found == {False} for found in facts)


def test_modes_are_kept_per_model(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        import torch
        import torch.nn as nn
        model_a = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        model_b = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
        model_b.eval()
        with torch.no_grad():
            for x, y in val_loader:
                out = model_a(x)
        """,
    )
    module = m["train"]
    loop = engine.loops(module)[0]
    call = model_calls(engine, loop)[0]
    modes = {v.mode for _, values in modes_at(engine, call) for v in values}
    assert modes == {"train"}  # model_b.eval() says nothing about model_a


def test_a_wrapper_of_code_already_run_is_no_second_root(tmp_path: Path) -> None:
    """``def run(**kwargs): main(opt)`` (YOLOv5's entry point for notebooks) only calls code
    the script's own entry point ran: it adds no context, only the cost of a second one.
    A function that does work of its own still runs as a root."""
    engine, m = engine_for(
        tmp_path,
        train="""
        import torch

        def train(model, loader, optimizer):
            for x, y in loader:
                optimizer.zero_grad()
                model(x).sum().backward()
                optimizer.step()

        def main(opt):
            train(opt.model, opt.loader, opt.optimizer)

        def run(**kwargs):
            for key, value in kwargs.items():
                setattr(opt, key, value)
            main(opt)

        def finetune(opt):
            opt.model.eval()
            main(opt)

        if __name__ == "__main__":
            main(opt)
        """,
    )
    module = m["train"]
    occurrences = steps(engine, module)
    assert len({id(o.frame) for o in occurrences}) == 2  # from the script, and from finetune
    assert {o.frame.parent.parent.function.name.value for o in occurrences if o.frame.parent.parent.function} == {"finetune"}


def test_callers_are_explored_once_per_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper called from many functions, each called from many more: the paths up to
    the roots multiply with every level, the functions on them do not."""
    width = 12
    middle = "\n".join(f"def mid{i}(opt):\n" + "".join(f"    low{j}(opt)\n" for j in range(width)) for i in range(width))
    low = "\n".join(f"def low{j}(opt):\n    step(opt)\n" for j in range(width))
    top = "\n".join(f"def top{k}(opt):\n" + "".join(f"    mid{i}(opt)\n" for i in range(width)) for k in range(width))
    engine, m = engine_for(tmp_path, train=f"def step(opt):\n    opt.step()\n\n{low}\n{middle}\n{top}\n")
    visits: list[object] = []
    explore = Engine._run_callers_root
    monkeypatch.setattr(Engine, "_run_callers_root", lambda self, *args: visits.append(args) or explore(self, *args))
    assert len(steps(engine, m["train"])) == width**3  # every path runs the step
    assert len(visits) <= 2 * width**2 + width  # once per call site, not once per path


def test_callable_objects_run_their_call_method(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        import torch

        class LossScaler:
            def __init__(self):
                self.scaler = torch.amp.GradScaler("cuda")

            def __call__(self, loss, optimizer):
                self.scaler.scale(loss).backward()
                self.scaler.step(optimizer)
                self.scaler.update()

        loss_scaler = LossScaler()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in loader:
            loss_scaler(criterion(model(x), y), optimizer)
        """,
    )
    module = m["train"]
    found = steps(engine, module)
    assert found and all(o.state.loops for o in found)
    assert {line(module, o.node_in(module)) for o in found} == {10}
    assert {line(module, o.anchor_in(module)) for o in found} == {16}


def test_a_helper_that_raises_ends_only_its_own_path(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        import torch
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

        def check(loss):
            if not torch.isfinite(loss):
                raise RuntimeError("diverged")

        for x, y in loader:
            loss = model(x, y)
            check(loss)
            loss.backward()
            optimizer.step()
        """,
    )
    assert steps(engine, m["train"])


def test_typing_cast_is_transparent(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        from typing import cast
        import torch
        optimizer = cast(torch.optim.Optimizer, torch.optim.SGD(model.parameters(), lr=0.1))
        for x, y in loader:
            model(x, y).backward()
            optimizer.step()
        """,
    )
    module = m["train"]
    assert all(engine.key(o.op.target, module, o.frame).sites for o in steps(engine, module))


def test_library_driven_hooks_run_inside_a_loop(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        import torch
        import lightning as L

        class Module(L.LightningModule):
            def training_step(self, batch, batch_idx):
                opt = self.optimizers()
                loss = self.model(batch).mean()
                self.manual_backward(loss)
                opt.step()

            def validation_step(self, batch, batch_idx):
                return self.model(batch)
        """,
    )
    module = m["train"]
    engine.analyse(module)
    backward = engine.all_occurrences(OpKind.BACKWARD)
    assert backward and all(o.state.loops for o in backward)
    validation = [s for s in engine.snapshots(module.calls_by_name["model"][-1], module)]
    assert validation and all(s.state.grad == frozenset({"off"}) for s in validation)


def test_batches_drawn_with_next_and_through_wrappers(tmp_path: Path) -> None:
    engine, m = engine_for(
        tmp_path,
        train="""
        from torch.utils.data import DataLoader
        loader = DataLoader(dataset, batch_size=8)
        it = iter(loader)
        while True:
            batch = next(it)
            model(batch).backward()
            optimizer.step()
        pbar = tqdm(enumerate(loader))
        for i, batch in pbar:
            model(batch).backward()
            optimizer.step()
        """,
    )
    module = m["train"]
    loops = engine.loops(module)
    assert len(loops) == 2 and all(engine.iterates_data(loop.loop) for loop in loops)
    assert all(is_loader(s, module, engine.ev) for loop in loops for s in data_sources(loop.loop, engine.ev))


def test_a_thousand_elif_branches_are_analysed_on_the_deep_stack(tmp_path: Path) -> None:
    # Each elif nests in the if before it; the linter runs every file on a deep stack.
    chain = "\n".join(f"elif mode == {i}:\n    optimizer.zero_grad()" for i in range(1, 1000))
    text = f"if mode == 0:\n    optimizer.zero_grad()\n{chain}\n"

    def clears() -> int:
        engine, m = engine_for(tmp_path, train=text)
        return len(engine.occurrences(m["train"], OpKind.CLEAR))

    assert run_deep(clears) == 1000


# -- what later code does with a variable (analysis/uses.py) ------------------------------------

USES = {
    # (the code after ``total += loss``, tensor needed, backpropagated, escapes)
    "printed": ('print(f"{total / n:.3f}", "%.2f" % total, "{}".format(total))', False, False, False),
    "compared": ("if total < best:\n    best = total\nprint(round(best, 3))", False, False, False),
    "reset": ("total = 0.0", False, False, False),
    "tensor-method": ("print(total.detach().cpu())", True, False, False),
    "formatted-method": ('print(f"{total.item():.3f}")', True, False, False),
    "torch-function": ("torch.distributed.all_reduce(total)", True, False, False),
    "library-call": ('writer.add_scalar("loss", total, step)', True, False, False),
    "backward": ("(total / n).backward()", True, True, False),
    "backward-of-a-name": ("avg = total / n\nscaler.scale(avg).backward()", True, True, False),
    "framework-backward": ("accelerator.backward(total)", True, True, False),
    "container-backward": ("kept = []\nkept.append(total)\ntorch.stack(kept).sum().backward()", True, True, False),
    "attribute": ("self_total = {'loss': total}\nstate.total = self_total", True, False, True),
    "project-function": ("def log(v):\n    print(v)\nlog(total)", True, False, True),
    "global": ("def later():\n    global total\n    return total", True, False, True),
}


@pytest.mark.parametrize(("after", "tensor", "graph", "unknown"), USES.values(), ids=USES.keys())
def test_variable_uses(tmp_path: Path, after: str, tensor: bool, graph: bool, unknown: bool) -> None:
    engine, m = engine_for(tmp_path, train="import torch\n\ntotal = 0.0\nfor x in xs:\n    total += loss\n" + after + "\n")
    module = m["train"]
    [statement] = module.aug_assigns
    found = variable_uses("total", statement, module, engine.ev)
    assert (found.tensor, found.graph, found.unknown) == (tensor, graph, unknown)


def test_returned_values_are_followed_to_visible_callers(tmp_path: Path) -> None:
    source = "def epoch():\n    total = 0.0\n    for x in xs:\n        total += loss\n    return total\n\n"
    for caller, expected in (("print(epoch())", (False, False, False)), ("epoch().backward()", (True, True, False)), ("", (True, False, True))):
        engine, m = engine_for(tmp_path, train=source + caller + "\n")
        module = m["train"]
        found = variable_uses("total", module.aug_assigns[0], module, engine.ev)
        assert (found.tensor, found.graph, found.unknown) == expected, caller
