"""LR-scheduler rules: TL301 (per-epoch scheduler stepped per batch), TL302 (per-step
scheduler stepped per epoch), TL303 (scheduler stepped before the optimizer), TL304
(ReduceLROnPlateau stepped without its metric)."""

from __future__ import annotations

import textwrap

import pytest

from trainlint.testing import expected_lines, lint_files, lint_snippet


def flagged(source: str, code: str) -> list[int]:
    return sorted(d.line for d in lint_snippet(textwrap.dedent(source), select=[code]) if d.code == code)


def assert_flags_marked(source: str, code: str) -> None:
    source = textwrap.dedent(source)
    expected = expected_lines(source, code)
    assert flagged(source, code) == expected


def assert_silent(source: str, code: str) -> None:
    assert flagged(source, code) == []


def project_lines(files: dict[str, str], code: str, main: str) -> list[int]:
    sources = {name: textwrap.dedent(text) for name, text in files.items()}
    return sorted(d.line for d in lint_files(sources, select=[code], main=main) if d.code == code)


# -- TL301 per-epoch-scheduler-stepped-per-batch ----------------------------------------------

IMAGENET_STEPLR_IN_TRAIN = """
import torch
from torch.optim.lr_scheduler import StepLR

def train(loader, model, criterion, optimizer, scheduler):
    model.train()
    for images, target in loader:
        loss = criterion(model(images), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()  # expect: TL301

def main():
    optimizer = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9)
    scheduler = StepLR(optimizer, step_size=30, gamma=0.1)
    for epoch in range(90):
        train(train_loader, model, criterion, optimizer, scheduler)
"""

TRAINER_WITH_BUILDER = """
import torch

def build_scheduler(optimizer, args):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)

class Trainer:
    def __init__(self, model, args):
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
        self.scheduler = build_scheduler(self.optimizer, args)

    def fit(self, train_loader, epochs):
        for epoch in range(epochs):
            for batch in train_loader:
                loss = self.model(batch).loss
                loss.backward()
                self.optimizer.step()
                self.optimizer.zero_grad()
                self.scheduler.step()  # expect: TL301
"""

MULTISTEP_AND_EXPONENTIAL = """
from torch import optim

opt = optim.SGD(net.parameters(), lr=0.1)
milestones = [30, 60, 80]
multistep = optim.lr_scheduler.MultiStepLR(opt, milestones=milestones)
decay = optim.lr_scheduler.ExponentialLR(opt, gamma=0.95)
for epoch in range(100):
    for step, (x, y) in enumerate(train_dl):
        opt.zero_grad()
        criterion(net(x), y).backward()
        opt.step()
        multistep.step()  # expect: TL301
        decay.step()  # expect: TL301
"""

SEQUENTIAL_OF_EPOCH_CHILDREN = """
import torch

warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.01, total_iters=args.lr_warmup_epochs)
main_sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs - args.lr_warmup_epochs)
lr_scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, schedulers=[warmup, main_sched], milestones=[args.lr_warmup_epochs])
for epoch in range(args.epochs):
    for image, target in data_loader:
        loss = criterion(model(image), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr_scheduler.step()  # expect: TL301
"""


@pytest.mark.parametrize(
    "source", [IMAGENET_STEPLR_IN_TRAIN, TRAINER_WITH_BUILDER, MULTISTEP_AND_EXPONENTIAL, SEQUENTIAL_OF_EPOCH_CHILDREN]
)
def test_tl301_flags_epoch_schedules_stepped_in_the_batch_loop(source: str) -> None:
    assert_flags_marked(source, "TL301")


def test_tl301_message_names_the_class_the_argument_and_where_it_was_built() -> None:
    [diagnostic] = lint_snippet(textwrap.dedent(IMAGENET_STEPLR_IN_TRAIN), select=["TL301"])
    assert "StepLR(step_size=30)" in diagnostic.message
    assert "example.py:16" in diagnostic.message


def test_tl301_follows_the_scheduler_into_a_helper_of_another_file() -> None:
    engine = """
    def train_one_epoch(model, optimizer, lr_scheduler, data_loader):
        for images, targets in data_loader:
            loss = model(images, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            lr_scheduler.step()
    """
    train = """
    import torch
    from engine import train_one_epoch

    optimizer = torch.optim.SGD(model.parameters(), lr=0.02)
    lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[16, 22], gamma=0.1)
    for epoch in range(26):
        train_one_epoch(model, optimizer, lr_scheduler, data_loader)
    """
    assert project_lines({"engine.py": engine, "train.py": train}, "TL301", main="engine.py") == [8]


TORCHVISION_DETECTION_ENGINE = """
import math
import torch

def train_one_epoch(model, optimizer, data_loader, device, epoch, print_freq):
    model.train()
    lr_scheduler = None
    if epoch == 0:
        warmup_factor = 1.0 / 1000
        warmup_iters = min(1000, len(data_loader) - 1)
        lr_scheduler = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=warmup_factor, total_iters=warmup_iters
        )
    for images, targets in metric_logger.log_every(data_loader, print_freq, header):
        loss_dict = model(images, targets)
        losses = sum(loss for loss in loss_dict.values())
        optimizer.zero_grad()
        losses.backward()
        optimizer.step()
        if lr_scheduler is not None:
            lr_scheduler.step()
"""

TORCHVISION_DETECTION_TRAIN = """
import torch
from engine import train_one_epoch

def main(args):
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    args.lr_scheduler = args.lr_scheduler.lower()
    if args.lr_scheduler == "multisteplr":
        lr_scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=args.lr_steps, gamma=args.lr_gamma)
    elif args.lr_scheduler == "cosineannealinglr":
        lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    else:
        raise RuntimeError("unsupported scheduler")
    for epoch in range(args.start_epoch, args.epochs):
        train_one_epoch(model, optimizer, data_loader, device, epoch, args.print_freq)
        lr_scheduler.step()
        evaluate(model, data_loader_test, device=device)
"""


@pytest.mark.parametrize("code", ["TL301", "TL302", "TL303"])
@pytest.mark.parametrize("main", ["engine.py", "train.py"])
def test_torchvision_detection_warmup_per_batch_and_milestones_per_epoch_are_silent(code: str, main: str) -> None:
    files = {"engine.py": TORCHVISION_DETECTION_ENGINE, "train.py": TORCHVISION_DETECTION_TRAIN}
    assert project_lines(files, code, main=main) == []


def test_torchvision_detection_cosine_stepped_per_batch_is_flagged() -> None:
    engine = TORCHVISION_DETECTION_ENGINE.replace("def train_one_epoch(model, optimizer,", "def train_one_epoch(model, optimizer, main_scheduler,")
    engine = engine.replace("            lr_scheduler.step()\n", "            lr_scheduler.step()\n        main_scheduler.step()\n")
    train = TORCHVISION_DETECTION_TRAIN.replace("train_one_epoch(model, optimizer,", "train_one_epoch(model, optimizer, lr_scheduler,")
    train = train.replace("        lr_scheduler.step()\n", "")
    files = {"engine.py": engine, "train.py": train}
    # The cosine branch counts epochs; the milestone branch (args.lr_steps) says nothing.
    assert project_lines(files, "TL301", main="engine.py") == [22]


@pytest.mark.parametrize(
    "source",
    [
        # Stepped once per epoch, after the batch loop: the intended use.
        """
        import torch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
        for epoch in range(90):
            for x, y in train_loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
            scheduler.step()
        """,
        # Full-batch training (a GCN): each iteration of range(epochs) is an epoch.
        """
        import torch
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.5)
        for epoch in range(200):
            optimizer.zero_grad()
            out = model(data.x, data.edge_index)
            loss = criterion(out[data.train_mask], data.y[data.train_mask])
            loss.backward()
            optimizer.step()
            scheduler.step()
        """,
        # A bare literal T_max, a LambdaLR, warm restarts and a step size in iterations
        # reveal no unit, or a per-step one.
        """
        import torch
        from torch.optim import lr_scheduler
        cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=100)
        lam = lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, s / 500))
        restarts = lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=10)
        iteration_steps = lr_scheduler.StepLR(optimizer, step_size=5000)
        for epoch in range(10):
            for batch in loader:
                loss = model(batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                cosine.step()
                lam.step()
                restarts.step()
                iteration_steps.step()
        """,
        # step(epoch) sets the position explicitly.
        """
        import torch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
        for epoch in range(90):
            for i, (x, y) in enumerate(loader):
                loss = criterion(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step(epoch + i / len(loader))
        """,
        # T_max spelled in steps even though it mentions epochs.
        """
        import torch
        steps_per_epoch = len(train_loader)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * steps_per_epoch)
        for epoch in range(args.epochs):
            for batch in train_loader:
                loss = model(batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                scheduler.step()
        """,
    ],
)
def test_tl301_silent_on_correct_idioms_and_unknown_intents(source: str) -> None:
    assert_silent(source, "TL301")


# -- TL302 per-step-scheduler-stepped-per-epoch -----------------------------------------------

HF_NO_TRAINER = """
import math
from accelerate import Accelerator
from transformers import get_scheduler

def main():
    args = parse_args()
    accelerator = Accelerator(gradient_accumulation_steps=args.gradient_accumulation_steps)
    optimizer = torch.optim.AdamW(optimizer_grouped_parameters, lr=args.learning_rate)
    num_update_steps_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    args.max_train_steps = args.num_train_epochs * num_update_steps_per_epoch
    lr_scheduler = get_scheduler(
        name=args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.num_warmup_steps,
        num_training_steps=args.max_train_steps,
    )
    model, optimizer, train_dataloader, eval_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader, lr_scheduler
    )
    for epoch in range(args.num_train_epochs):
        model.train()
        for step, batch in enumerate(train_dataloader):
            with accelerator.accumulate(model):
                outputs = model(**batch)
                accelerator.backward(outputs.loss)
                optimizer.step()
                optimizer.zero_grad()
        lr_scheduler.step()  # expect: TL302
"""

WARMUP_AFTER_TRAIN_ONE_EPOCH = """
import torch
from transformers import get_linear_schedule_with_warmup

def train_one_epoch(model, loader, optimizer):
    for batch in loader:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

total_steps = len(train_loader) * epochs
scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=500, num_training_steps=total_steps)
onecycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, epochs=epochs, steps_per_epoch=len(train_loader))
cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=len(train_loader))
for epoch in range(epochs):
    train_one_epoch(model, train_loader, optimizer)
    scheduler.step()  # expect: TL302
    onecycle.step()  # expect: TL302
    cosine.step()  # expect: TL302
"""


@pytest.mark.parametrize("source", [HF_NO_TRAINER, WARMUP_AFTER_TRAIN_ONE_EPOCH])
def test_tl302_flags_step_schedules_stepped_per_epoch(source: str) -> None:
    assert_flags_marked(source, "TL302")


def test_tl302_message_names_the_length_argument() -> None:
    [diagnostic] = lint_snippet(textwrap.dedent(HF_NO_TRAINER), select=["TL302"])
    assert "get_scheduler(num_training_steps=args.max_train_steps)" in diagnostic.message


def test_tl302_silent_on_the_hugging_face_loop_as_written() -> None:
    correct = HF_NO_TRAINER.replace("                optimizer.step()\n", "                optimizer.step()\n                lr_scheduler.step()\n")
    correct = correct.replace("        lr_scheduler.step()  # expect: TL302\n", "")
    assert_silent(correct, "TL302")
    assert_silent(correct, "TL303")


@pytest.mark.parametrize(
    "source",
    [
        # Epoch-sized cosine stepped per epoch; step-sized OneCycleLR stepped per batch.
        """
        import torch
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
        onecycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=args.epochs * len(loader))
        for epoch in range(args.epochs):
            for x, y in loader:
                criterion(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad()
                onecycle.step()
            cosine.step()
        """,
        # SequentialLR whose children disagree, and a constant HF schedule: no intent.
        """
        import torch
        from transformers import get_constant_schedule
        warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=warmup_steps)
        cos = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_epochs)
        mixed = torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, cos], milestones=[5])
        constant = get_constant_schedule(optimizer)
        for epoch in range(num_epochs):
            for batch in loader:
                model(batch).backward()
                optimizer.step()
                optimizer.zero_grad()
            mixed.step()
            constant.step()
        """,
    ],
)
def test_tl302_silent_on_correct_idioms_and_unknown_intents(source: str) -> None:
    assert_silent(source, "TL302")
    assert_silent(source, "TL301")


# -- TL303 scheduler-step-before-optimizer-step -----------------------------------------------

PRE_1_1_EPOCH_LOOP = """
import torch

def train(loader, model, optimizer):
    for x, y in loader:
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
for epoch in range(90):
    scheduler.step()  # expect: TL303
    train(train_loader, model, optimizer)
"""

BATCH_LOOP_WITH_SCALER = """
import torch
scaler = torch.cuda.amp.GradScaler()
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=total_steps)
for epoch in range(epochs):
    for batch in train_loader:
        optimizer.zero_grad()
        with torch.autocast("cuda"):
            loss = model(batch)
        scaler.scale(loss).backward()
        scheduler.step()  # expect: TL303
        scaler.step(optimizer)
        scaler.update()
"""


@pytest.mark.parametrize("source", [PRE_1_1_EPOCH_LOOP, BATCH_LOOP_WITH_SCALER])
def test_tl303_flags_scheduler_before_optimizer(source: str) -> None:
    assert_flags_marked(source, "TL303")


def test_tl303_sees_a_scheduler_stepped_in_a_per_epoch_hook_of_another_file() -> None:
    hooks = """
    def on_epoch_start(scheduler):
        scheduler.step()
    """
    train = """
    import torch
    from hooks import on_epoch_start

    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10)
    for epoch in range(30):
        on_epoch_start(scheduler)
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
    """
    assert project_lines({"hooks.py": hooks, "train.py": train}, "TL303", main="hooks.py") == [3]


@pytest.mark.parametrize(
    "source",
    [
        # Optimizer first, then scheduler; gradient accumulation steps both together.
        """
        import torch
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=n)
        for i, batch in enumerate(loader):
            loss = model(batch) / accum
            loss.backward()
            if (i + 1) % accum == 0:
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
        """,
        # Two optimizer/scheduler pairs (a GAN): each scheduler follows its own optimizer.
        """
        import torch
        opt_d = torch.optim.Adam(netD.parameters(), lr=2e-4)
        opt_g = torch.optim.Adam(netG.parameters(), lr=2e-4)
        sched_d = torch.optim.lr_scheduler.StepLR(opt_d, step_size=30)
        sched_g = torch.optim.lr_scheduler.StepLR(opt_g, step_size=30)
        for epoch in range(100):
            for real in loader:
                opt_d.zero_grad()
                loss_d(netD, netG, real).backward()
                opt_d.step()
                sched_d.step()
                opt_g.zero_grad()
                loss_g(netD, netG).backward()
                opt_g.step()
                sched_g.step()
        """,
        # Fast-forwarding a resumed schedule, and ReduceLROnPlateau fed last epoch's metric.
        """
        import torch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
        for _ in range(args.start_epoch):
            scheduler.step()
        val_loss = float("inf")
        for epoch in range(args.start_epoch, 90):
            plateau.step(val_loss)
            for x, y in loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
            val_loss = validate(model)
            scheduler.step()
        """,
    ],
)
def test_tl303_silent_on_correct_orders(source: str) -> None:
    assert_silent(source, "TL303")


# -- TL304 plateau-scheduler-without-metric ---------------------------------------------------


def test_tl304_flags_plateau_steps_without_a_metric() -> None:
    assert_flags_marked(
        """
        import torch
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        class Trainer:
            def __init__(self, model):
                self.optimizer = torch.optim.Adam(model.parameters())
                self.scheduler = ReduceLROnPlateau(self.optimizer, mode="min", patience=5)

            def end_epoch(self, epoch, val_loss):
                self.scheduler.step()  # expect: TL304

        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "max")
        for epoch in range(10):
            accuracy = evaluate(model)
            plateau.step(epoch=epoch)  # expect: TL304
        """,
        "TL304",
    )


def test_tl304_silent_with_a_metric_or_another_scheduler() -> None:
    assert_silent(
        """
        import torch
        from torch.optim import lr_scheduler

        plateau = lr_scheduler.ReduceLROnPlateau(optimizer, "min")
        plateau.step(val_loss)
        plateau.step(metrics=val_loss)
        if args.scheduler == "plateau":
            scheduler = lr_scheduler.ReduceLROnPlateau(optimizer)
        else:
            scheduler = lr_scheduler.StepLR(optimizer, step_size=30)
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(val_loss)
        else:
            scheduler.step()
        """,
        "TL304",
    )
