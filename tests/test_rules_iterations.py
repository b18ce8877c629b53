"""TL206-TL212, TL605 and TL803: what outlives an iteration (optimizers, iterators, hidden
states, kept losses, accumulated gradients, frozen models, DDP wrappers).

Each case is a small realistic script whose flagged lines carry ``# expect: TLxxx``; the
look-alikes next to them must stay silent. Several cases share one script to keep the
suite fast.
"""

from __future__ import annotations

from pathlib import Path

from trainlint.testing import expected_lines, lint_files, lint_snippet

CODES = ("TL206", "TL207", "TL208", "TL210", "TL211", "TL212", "TL605", "TL803")


def _check(source: str) -> None:
    found = lint_snippet(source, CODES)
    for code in CODES:
        assert sorted(d.line for d in found if d.code == code) == expected_lines(source, code), code


# -- TL206 optimizer-created-in-loop ------------------------------------------------------


def test_optimizer_rebuilt_per_epoch_or_batch_but_not_per_run() -> None:
    _check(
        """
import torch
import torch.nn as nn
import torch.optim as optim

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)

model = Net()

def make_optimizer(net, lr):
    return optim.RMSprop(net.parameters(), lr=lr)

def per_epoch_through_a_helper(epochs):
    for epoch in range(epochs):
        optimizer = make_optimizer(model, 0.1 * 0.9 ** epoch)  # expect: TL206
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()

def unfrozen_once(epochs):
    optimizer = optim.Adam(model.fc.parameters())
    for epoch in range(epochs):
        if epoch == 5:
            optimizer = optim.Adam(model.parameters())
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()

def repeated_runs(runs):
    for run in range(runs):
        net = Net()
        optimizer = optim.Adam(net.parameters())
        for x, y in loader:
            optimizer.zero_grad()
            criterion(net(x), y).backward()
            optimizer.step()

def adversarial_perturbation():
    for x, y in loader:
        delta = torch.zeros_like(x, requires_grad=True)
        attack = optim.Adam([delta], lr=0.01)
        for _ in range(10):
            attack.zero_grad()
            (-criterion(model(x + delta), y)).backward()
            attack.step()

def stages(stage_epochs):
    for lr, epochs in stage_epochs:
        optimizer = optim.Adam(model.parameters(), lr=lr)
        for epoch in range(epochs):
            for x, y in loader:
                optimizer.zero_grad()
                criterion(model(x), y).backward()
                optimizer.step()
"""
    )


# -- TL207 parameter-iterator-reused ------------------------------------------------------


def test_iterators_consumed_twice_on_one_way_only() -> None:
    _check(
        """
import torch

def decay_groups(model):
    named = model.named_parameters()
    decay = [p for n, p in named if p.ndim > 1]
    no_decay = [p for n, p in named if p.ndim <= 1]  # expect: TL207
    return torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])

def two_ways(model, use_sgd):
    params = model.parameters()
    if use_sgd:
        optimizer = torch.optim.SGD(params, lr=0.1)
    else:
        optimizer = torch.optim.Adam(params)
    return optimizer

def rebound(model):
    params = model.parameters()
    optimizer = torch.optim.SGD(params, lr=0.1)
    params = list(model.parameters())
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    return optimizer

def counted_then_used(model):
    params = filter(lambda p: p.requires_grad, model.parameters())
    print(sum(p.numel() for p in params))
    return torch.optim.SGD(params, lr=0.1)  # expect: TL207
"""
    )


def test_iterators_consumed_in_the_functions_they_are_handed_to() -> None:
    _check(
        """
import torch
import torch.nn as nn

net = Net()
params = net.parameters()
optimizer = torch.optim.SGD(params, lr=0.1)
kept = list(net.parameters())

def train(loader):
    for x, y in loader:
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        nn.utils.clip_grad_norm_(params, 1.0)  # expect: TL207
        nn.utils.clip_grad_norm_(kept, 1.0)
        optimizer.step()

def train_epoch(model, opt, parameters, loader):
    for x, y in loader:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        nn.utils.clip_grad_norm_(parameters, 1.0)  # expect: TL207
        opt.step()

def main(model):
    trainable = filter(lambda p: p.requires_grad, model.parameters())
    opt = torch.optim.Adam(trainable, lr=1e-3)
    materialised = list(filter(lambda p: p.requires_grad, model.parameters()))
    opt2 = torch.optim.Adam(materialised, lr=1e-3)
    for epoch in range(10):
        train_epoch(model, opt, trainable, train_loader)
        train_epoch(model, opt2, materialised, train_loader)
        train_epoch(model, opt, model.parameters(), train_loader)

for epoch in range(10):
    train(train_loader)
"""
    )


# -- TL208 optimizer-stepped-twice --------------------------------------------------------


def test_double_steps_but_not_closures_or_second_backward() -> None:
    _check(
        """
import torch

optimizer = torch.optim.LBFGS(model.parameters())
adam = torch.optim.Adam(model.parameters())

def lbfgs():
    for x, y in loader:
        def closure():
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            return loss
        optimizer.step(closure)
        optimizer.step(closure)

def helper_steps_again():
    for x, y in loader:
        adam.zero_grad()
        criterion(model(x), y).backward()
        adam.step()
        finish(adam)  # expect: TL208

def finish(opt):
    opt.step()

def two_losses_two_steps():
    for x, y in loader:
        adam.zero_grad()
        criterion(model(x), y).backward()
        adam.step()
        adam.zero_grad()
        criterion(model(y), x).backward()
        adam.step()
"""
    )


# -- TL210 recurrent-state-not-detached ---------------------------------------------------


def test_hidden_state_carried_with_its_graph() -> None:
    _check(
        """
import torch
import torch.nn as nn

lstm = nn.LSTM(8, 16)

def carried():
    h, c = torch.zeros(1, 4, 16), torch.zeros(1, 4, 16)
    for x, y in loader:
        out, (h, c) = lstm(x, (h, c))  # expect: TL210
        loss = criterion(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

def detached_each_batch():
    h, c = torch.zeros(1, 4, 16), torch.zeros(1, 4, 16)
    for x, y in loader:
        h, c = h.detach(), c.detach()
        out, (h, c) = lstm(x, (h, c))
        loss = criterion(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

def carried_in_evaluation():
    h = None
    with torch.no_grad():
        for x, y in val_loader:
            out, h = lstm(x, h)

def within_one_sequence():
    for x, y in loader:
        h = None
        for t in range(x.size(0)):
            out, h = lstm(x[t:t + 1], h)
        loss = criterion(out, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

def encoder_applied_to_the_batch():
    for x, y in loader:
        x = model.encoder(x)
        loss = criterion(model.head(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
"""
    )


# -- TL211 loss-tensor-kept-across-iterations ---------------------------------------------


METER = """
class AverageMeter:
    def __init__(self):
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        self.sum += val * n
        self.count += n
"""

KEEPING = """
import torch
import torch.nn.functional as F
from meter import AverageMeter

def train(model, loader, optimizer):
    losses = AverageMeter()
    seen = AverageMeter()
    logs = {}
    latest = {}
    for step, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.update(loss, x.size(0))  # expect: TL211
        seen.update(x.size(0))
        logs[step] = {"loss": loss.item()}
        latest["loss"] = loss  # one entry, replaced every step (stylegan2-pytorch)
        logs[f"loss_{step}"] = loss  # expect: TL211
        window = []
        window.append(loss)

def fit(model, loader, val_loader, optimizer):
    val_losses = []
    for epoch in range(10):
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
        val_loss = 0
        with torch.no_grad():
            for x, y in val_loader:
                val_loss += F.cross_entropy(model(x), y)
        val_losses.append(val_loss / len(val_loader))  # computed without a graph
"""


def test_losses_kept_in_meters_and_dicts() -> None:
    found = lint_files({"meter.py": METER, "train.py": KEEPING}, select=["TL211"], main="train.py")
    assert sorted(d.line for d in found if d.code == "TL211") == expected_lines(KEEPING, "TL211")


# -- TL212 accumulated-loss-not-averaged --------------------------------------------------


def test_accumulation_without_division() -> None:
    _check(
        """
import torch.nn.functional as F

def compute_loss(model, x, y):
    return F.cross_entropy(model(x), y) / accum

def unscaled_sum_of_terms(loader):
    for i, (x, y) in enumerate(loader):
        logits, aux = model(x)
        loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)
        loss.backward()  # expect: TL212
        if (i + 1) % accum == 0:
            optimizer.step()
            optimizer.zero_grad()

def divided_in_a_helper(loader):
    for i, (x, y) in enumerate(loader):
        loss = compute_loss(model, x, y)
        loss.backward()
        if (i + 1) % accum == 0:
            optimizer.step()
            optimizer.zero_grad()

def divided_in_place(loader):
    for i, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x), y)
        loss /= accum
        loss.backward()
        if (i + 1) % accum == 0:
            optimizer.step()
            optimizer.zero_grad()

def skipped_on_nan(loader):
    for x, y in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if loss.isfinite():
            optimizer.step()
"""
    )


def test_framework_backward_divides_only_when_built_for_accumulation() -> None:
    # accelerate's fsdp_with_peak_mem_tracking.py example: Accelerator() without
    # gradient_accumulation_steps, a manual `step % k` gate, no division.
    _check(
        """
import torch
import torch.nn.functional as F
import lightning as L
from accelerate import Accelerator

plain = Accelerator(mixed_precision="bf16")
accumulating = Accelerator(gradient_accumulation_steps=4)

def without_accumulation_setting(model, loader, optimizer):
    for step, batch in enumerate(loader):
        loss = model(**batch).loss
        plain.backward(loss)  # expect: TL212
        if step % 4 == 0:
            optimizer.step()
            optimizer.zero_grad()

def with_accumulation_setting(model, loader, optimizer):
    for step, batch in enumerate(loader):
        loss = model(**batch).loss
        accumulating.backward(loss)
        if step % 4 == 0:
            optimizer.step()
            optimizer.zero_grad()

class ManualAccumulation(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.manual_backward(loss)  # expect: TL212
        if (batch_idx + 1) % 4 == 0:
            opt.step()
            opt.zero_grad()

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())

class ManualAccumulationDivided(ManualAccumulation):
    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.manual_backward(loss / 4)
        if (batch_idx + 1) % 4 == 0:
            opt.step()
            opt.zero_grad()
"""
    )


# -- TL605 frozen-model-in-train-mode -----------------------------------------------------


def test_frozen_teacher_but_not_an_ema_teacher() -> None:
    _check(
        """
import copy
import torch
import torch.nn.functional as F
import torchvision

student = torchvision.models.resnet18()
teacher = torchvision.models.resnet50()
for p in teacher.parameters():
    p.requires_grad = False
ema = copy.deepcopy(student)
ema.requires_grad_(False)
optimizer = torch.optim.SGD(student.parameters(), lr=0.1)

for x, y in loader:
    with torch.no_grad():
        t = teacher(x)  # expect: TL605
        e = ema(x)
    loss = F.cross_entropy(student(x), y) + F.mse_loss(student(x), t) + F.mse_loss(student(x), e)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        for ema_p, p in zip(ema.parameters(), student.parameters()):
            ema_p.mul_(0.999).add_(p, alpha=0.001)
"""
    )


def test_generator_under_no_grad_while_training_both_gan_models() -> None:
    _check(
        """
import torch
import torchvision

netG = torchvision.models.resnet18()
netD = torchvision.models.resnet18()
opt_g = torch.optim.Adam(netG.parameters())
opt_d = torch.optim.Adam(netD.parameters())
for real in loader:
    with torch.no_grad():
        fake = netG(noise)
    d_loss = netD(fake).mean() - netD(real).mean()
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = -netD(netG(noise)).mean()
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
"""
    )


def test_no_grad_sampling_through_a_wrapper_of_the_trained_model() -> None:
    # x-transformers' train_entropy_tokenizer.py: the tokenizer wraps the decoder the
    # optimizer trains, so no_grad does not make it a frozen model.
    _check(
        """
import torch
import torch.nn as nn

class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.1))

    def forward(self, x):
        return self.body(x)

class Tokenizer(nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, x):
        return self.decoder(x).argmax(-1)

class LossWrapper(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).pow(2).mean()

model = Decoder()
tokenizer = Tokenizer(model)
reference = Tokenizer(Decoder())
model = LossWrapper(model)
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
for i in range(1000):
    model.train()
    with torch.no_grad():
        ref = reference(next(train_loader))  # expect: TL605
    loss = model(next(train_loader)) + ref.float().mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
    if i % 100 == 0:
        model.eval()
        with torch.no_grad():
            tokens = tokenizer(next(val_loader))
"""
    )


FACTORY_KD = """
import torch
import torch.nn as nn
import torch.nn.functional as F

class ResNet(nn.Module):
    def __init__(self, depth):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.body(x).mean((2, 3)))

def build(depth):
    return ResNet(depth)

teacher = build(50)
teacher.load_state_dict(torch.load("teacher.pt"))
student = build(18)
optimizer = torch.optim.SGD(student.parameters(), lr=0.1)

def train_kd(student, teacher, loader):
    student.train()
    EVAL
    for x, y in loader:
        with torch.no_grad():
            t = teacher(x)  # expect: TL605
        loss = F.kl_div(F.log_softmax(student(x), 1), F.softmax(t, 1), reduction="batchmean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

for epoch in range(10):
    train_kd(student, teacher, train_loader)
"""


def test_teacher_and_student_built_by_one_factory() -> None:
    # knowledge-distillation-pytorch: both come from resnet.ResNet18(), two calls of one
    # factory, so they are two models.
    _check(FACTORY_KD.replace("EVAL", "pass"))
    _check(FACTORY_KD.replace("EVAL", "teacher.eval()").replace("  # expect: TL605", ""))


def test_a_train_function_is_not_called_by_model_train() -> None:
    # Knowledge-Distillation-Zoo: `def train(...)` calls `snet.train()`; that method call
    # is no caller of the script's `train`, whose parameters stay bound to main's models.
    frozen_by_flag = (
        FACTORY_KD.replace("EVAL", "pass")
        .replace("train_kd(", "train(")
        .replace('student = build(18)', 'for p in teacher.parameters():\n    p.requires_grad = False\nstudent = build(18)')
        .replace("        with torch.no_grad():\n            t = teacher(x)", "        t = teacher(x)")
    )
    assert "p.requires_grad = False" in frozen_by_flag and "no_grad" not in frozen_by_flag
    _check(frozen_by_flag)


SIBLING_COMMON = """
import torch
import torch.nn as nn

class Net(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, n), nn.BatchNorm1d(n), nn.Linear(n, 10))

    def forward(self, x):
        return self.body(x)

def define_net(n, cuda=True):
    net = Net(n)
    if cuda:
        net = torch.nn.DataParallel(net).cuda()
    return net
"""

SIBLING_BASE = """
import torch
import torch.nn.functional as F
from common import define_net

def main():
    net = define_net(64)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    nets = {'net': net}
    for epoch in range(10):
        train(train_loader, nets, optimizer)
        test(test_loader, nets)

def train(loader, nets, optimizer):
    net = nets['net']
    net.train()
    for x, y in loader:
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

def test(loader, nets):
    net = nets['net']
    net.eval()
    with torch.no_grad():
        for x, y in loader:
            net(x)

if __name__ == '__main__':
    main()
"""

SIBLING_KD = """
import torch
import torch.nn.functional as F
from common import define_net

def main():
    snet = define_net(64)
    tnet = define_net(256)
    for p in tnet.parameters():
        p.requires_grad = False
    optimizer = torch.optim.SGD(snet.parameters(), lr=0.1)
    nets = {'snet': snet, 'tnet': tnet}
    for epoch in range(10):
        train(train_loader, nets, optimizer)
        test(test_loader, nets)

def train(loader, nets, optimizer):
    snet = nets['snet']
    tnet = nets['tnet']
    snet.train()
    for x, y in loader:
        t = tnet(x)  # expect: TL605
        loss = F.cross_entropy(snet(x), y) + F.mse_loss(snet(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

def test(loader, nets):
    snet = nets['snet']
    snet.eval()
    with torch.no_grad():
        for x, y in loader:
            snet(x)

if __name__ == '__main__':
    main()
"""


def test_sibling_scripts_with_train_and_test_functions() -> None:
    # Knowledge-Distillation-Zoo: train_base.py, train_kd.py... each define train() and
    # test() that call net.train() / net.eval() on models held in a dict. Those method
    # calls are no callers of the scripts' train(): the teacher's freezing in main() is
    # seen, and test()'s eval() is undone by the next train() call.
    files = {"common.py": SIBLING_COMMON, "train_base.py": SIBLING_BASE, "train_kd.py": SIBLING_KD}
    found = lint_files(files, select=["TL603", "TL605"])
    assert [(d.code, Path(d.path).name, d.line) for d in found] == [("TL605", "train_kd.py", expected_lines(SIBLING_KD, "TL605")[0])]


# -- TL803 ddp-wrapper-bypassed -----------------------------------------------------------


def test_module_calls_that_feed_backward() -> None:
    _check(
        """
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

class LM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.body(x)

    def loss(self, x, y):
        return torch.nn.functional.mse_loss(self(x), y)

    def init_state(self, n):
        return torch.zeros(n, 4)

model = DDP(LM(), device_ids=[0])
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in loader:
    state = model.module.init_state(x.size(0))
    loss = model.module.loss(x + state, y)  # expect: TL803
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        sample = model.module(x)
torch.save(model.module.state_dict(), "lm.pt")
"""
    )
