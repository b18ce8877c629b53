"""TL401 through Hydra configs: optimizers built by ``instantiate`` and by the Lightning +
Hydra template's ``self.hparams.optimizer``, resolved from composed YAML configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainlint.cache import CACHE_DIR
from trainlint.config import Settings
from trainlint.runner import RunOptions, run
from trainlint.testing import lint_files

PRIMARY = """\
defaults:
  - optimizer: adamw
  - model: small
  - _self_

wd: 0.05
"""

ADAMW = """\
_target_: torch.optim.AdamW
lr: 3e-4
weight_decay: 1e-2
"""

SMALL = """\
width: 64
optimizer:
  _target_: torch.optim.SGD
  _partial_: true
  lr: 0.1
  weight_decay: ${wd}
"""

TRAIN = """\
import hydra
from hydra.utils import instantiate

def build(cfg, model):
    return instantiate(cfg.optimizer, params=model.parameters())

def make(optimizer_cfg, model):
    settings = optimizer_cfg
    return instantiate(settings, params=model.parameters())

@hydra.main(config_path="configs", config_name="config", version_base=None)
def main(cfg):
    model = Net()
    a = build(cfg, model)
    b = instantiate(cfg.model.optimizer)(params=model.parameters())
    factory = hydra.utils.instantiate(cfg.optimizer, _partial_=True)
    c = factory(model.parameters())
    d = instantiate(cfg.optimizer, params=model.parameters(), weight_decay=0.0)
    e = instantiate(cfg.optimizer, params=model.head.parameters())
    f = instantiate(cfg.trainer, model=model)
    g = make(cfg["optimizer"], model)
"""


def _findings(files: dict[str, str], main: str) -> list[tuple[int, str]]:
    return sorted((d.line, d.message) for d in lint_files(files, select=["TL401"], main=main) if d.code == "TL401")


def test_instantiate_reads_the_composed_config() -> None:
    files = {
        "configs/config.yaml": PRIMARY,
        "configs/optimizer/adamw.yaml": ADAMW,
        "configs/model/small.yaml": SMALL,
        "train.py": TRAIN,
    }
    found = _findings(files, "train.py")
    assert [line for line, _ in found] == [5, 9, 15, 17]
    assert "AdamW applies weight_decay=0.01 (set in configs/optimizer/adamw.yaml)" in found[0][1]
    assert "SGD applies weight_decay=0.05 (set in configs/model/small.yaml)" in found[2][1]


@pytest.mark.parametrize(
    ("optimizer", "flagged"),
    [
        ("_target_: torch.optim.AdamW\nweight_decay: 0.0\n", False),
        ("_target_: torch.optim.AdamW\nlr: 1e-3\n", False),  # the library's default decay
        ("_target_: timm.optim.create_optimizer_v2\nweight_decay: 0.05\n", False),
        ("_target_: torch.optim.SGD\nweight_decay: ${oc.env:WD}\n", False),
        ("# @package _global_\noptimizer:\n  _target_: torch.optim.SGD\n  weight_decay: 5.0e-4\n", True),
        ("!!python/object/apply:os.system ['echo']\n", False),
        ("_target_: [unclosed\n", False),
    ],
)
def test_config_variants(optimizer: str, flagged: bool) -> None:
    files = {
        "configs/config.yaml": "defaults:\n  - optimizer: custom\n",
        "configs/optimizer/custom.yaml": optimizer,
        "train.py": TRAIN.split("def build")[0]
        + '@hydra.main(config_path="configs", config_name="config.yaml")\n'
        + "def main(cfg):\n    opt = instantiate(cfg.optimizer, model.parameters())\n",
    }
    assert bool(_findings(files, "train.py")) is flagged


MODULE = """\
import torch
from lightning import LightningModule

class LitModule(LightningModule):
    def __init__(self, net, optimizer, scheduler):
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["net"])
        self.net = net

    def configure_optimizers(self):
        optimizer = self.hparams.optimizer(params=self.trainer.model.parameters())
        return {"optimizer": optimizer}

class GroupedModule(LightningModule):
    def __init__(self, optimizer):
        super().__init__()
        self.save_hyperparameters()

    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.ndim >= 2]
        rest = [p for p in self.parameters() if p.ndim < 2]
        return self.hparams.optimizer(params=[{"params": decay}, {"params": rest, "weight_decay": 0.0}])
"""

TEMPLATE_TRAIN = """\
import hydra

@hydra.main(version_base="1.3", config_path="../configs", config_name="train.yaml")
def main(cfg):
    model = hydra.utils.instantiate(cfg.model)
"""


def test_lightning_hydra_template_shape() -> None:
    files = {
        "configs/train.yaml": "defaults:\n  - _self_\n  - model: lit\n  - grouped: lit\n  - experiment: null\n",
        "configs/model/lit.yaml": (
            "_target_: src.models.lit_module.LitModule\noptimizer:\n  _target_: torch.optim.Adam\n  _partial_: true\n"
            "  lr: 0.001\n  weight_decay: 0.01\n"
        ),
        "configs/grouped/lit.yaml": (
            "_target_: src.models.lit_module.GroupedModule\noptimizer:\n  _target_: torch.optim.AdamW\n  _partial_: true\n"
            "  weight_decay: 0.01\n"
        ),
        "src/models/lit_module.py": MODULE,
        "src/train.py": TEMPLATE_TRAIN,
    }
    found = _findings(files, "src/models/lit_module.py")
    assert [line for line, _ in found] == [11]
    assert "Adam applies weight_decay=0.01 (set in configs/model/lit.yaml) to every parameter of `self.trainer.model`" in found[0][1]


def test_editing_a_config_invalidates_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.trainlint]\n")
    (tmp_path / "configs" / "optimizer").mkdir(parents=True)
    (tmp_path / "configs" / "config.yaml").write_text("defaults:\n  - optimizer: adamw\n")
    decay = tmp_path / "configs" / "optimizer" / "adamw.yaml"
    decay.write_text(ADAMW)
    (tmp_path / "train.py").write_text(TRAIN)

    def lint() -> list[int]:
        result = run([Path("train.py")], Settings(select=("TL401",), root=tmp_path), RunOptions(jobs=1))
        return [d.line for d in result.diagnostics]

    assert lint() == [5, 9, 17]
    decay.write_text(ADAMW.replace("1e-2", "0.0"))
    assert lint() == []
    assert (tmp_path / CACHE_DIR).exists()
