"""Repository-scale benchmark: trainlint (cold and warm cache), a bare libcst parse,
TorchFix and ruff, on the same files, for two corpora:

- **training code**: every ``.py`` file of public repositories with hand-written PyTorch
  training loops at pinned commits (nanoGPT, pytorch/examples, DETR, YOLOv5, ...), rebuilt
  by ``bench/training_corpus.py`` (``--training-corpus`` reuses a built one, ``--mirror``
  builds it from local git mirrors instead of cloning);
- **torch internals**: a deterministic sample (every k-th file, sorted by path) of the
  ``torch`` package installed in this virtualenv (``--corpus``), with the memory check (the
  same files once, twice and four times).

Every corpus is copied into a scratch folder so that every tool sees the same tree. TorchFix
and ruff run from a separate virtualenv (``--tools-venv``, created with ``--setup``):
TorchFix is installed with ``--no-deps`` plus its light dependencies, so it can never pull a
torch build; it is slow, so it is compared with trainlint on a sample of its own.

    python bench/bench_scale.py --setup                          # once: the tools' virtualenv
    python bench/bench_scale.py --mirror /work/.mirror           # ~25 minutes on 2 cores; Markdown tables

Each command runs in a fresh process tree; its wall time and peak RSS (largest process of
the tree, from ``getrusage(RUSAGE_CHILDREN)``) are measured by a small wrapper process.
Every measurement is the best of ``--repeat`` runs, because on a shared machine a single
run can be a third slower for reasons that have nothing to do with the tool.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import training_corpus  # noqa: E402 - a sibling script
DEFAULT_CORPUS = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "torch"
DEFAULT_TOOLS_VENV = Path("/tmp/trainlint-bench-venv")
TOOLS = ("ruff", "flake8", "PyYAML", "libcst>=1.5.0,<1.6.0")  # TorchFix's own dependencies + ruff
TORCHFIX = "torchfix==0.7.0"

# Runs a command, then prints its wall time and the peak RSS of its process tree.
WRAPPER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mb": usage.ru_maxrss / 1024, "exit": code}))
"""

# The baseline: parse every file with libcst, over the same number of processes.
BARE_PARSE = """
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import libcst

def parse(path):
    try:
        libcst.parse_module(Path(path).read_bytes())
    except Exception:
        pass

files = [str(p) for p in Path(sys.argv[1]).rglob("*.py")]
with ProcessPoolExecutor(int(sys.argv[2])) as pool:
    list(pool.map(parse, files, chunksize=32))
"""


@dataclass
class Timing:
    name: str
    files: int
    seconds: float
    cpu_seconds: float  # user + system of the whole process tree: robust on a busy machine
    peak_rss_mb: float

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds


def main() -> None:
    args = _arguments()
    if args.setup:
        _setup(args.tools_venv)
        return
    jobs = args.jobs or os.cpu_count() or 1
    results = {}
    with tempfile.TemporaryDirectory(prefix="trainlint-bench-") as scratch:
        training = args.training_corpus or _build_training_corpus(Path(scratch) / "training-source", args.mirror)
        results["training code"] = _run_corpus(args, sample(training, 10**9, Path(scratch) / "training"), jobs)
        results["torch internals"] = _run_corpus(args, sample(args.corpus, args.files, Path(scratch) / "torch"), jobs, memory=True)
    _report(results, jobs, args.json)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder of library code to sample (torch)")
    parser.add_argument("--files", type=int, default=800, help="files in the torch sample")
    parser.add_argument("--training-corpus", type=Path, help="a corpus built by bench/training_corpus.py")
    parser.add_argument("--mirror", type=Path, help="local git mirrors to build the training corpus from")
    parser.add_argument("--torchfix-files", type=int, default=200, help="TorchFix is slow: its own, smaller sample")
    parser.add_argument("--jobs", type=int, default=None, help="processes for every tool (default: every core)")
    parser.add_argument("--tools-venv", type=Path, default=DEFAULT_TOOLS_VENV)
    parser.add_argument("--setup", action="store_true", help="create the tools' virtualenv and exit")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    return parser.parse_args()


def _build_training_corpus(target: Path, mirror: Path | None) -> Path:
    for repository, commit, folder in training_corpus.REPOSITORIES:
        git_dir = training_corpus.git_dir(repository, mirror)
        training_corpus.export(git_dir, commit, folder, target / repository.replace("/", "__"))
    return target


def _setup(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, *TOOLS], check=True)
    subprocess.run([*pip, "--no-deps", TORCHFIX], check=True)


def sample(corpus: Path, count: int, target: Path) -> Path:
    """Every k-th ``.py`` file of ``corpus`` (sorted), copied with its relative path."""
    files = sorted(p for p in corpus.rglob("*.py") if p.is_file())
    step = max(len(files) // count, 1)
    for file in files[::step][:count]:
        destination = target / file.relative_to(corpus)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, destination)
    return target


def measure(name: str, files: int, command: list[str], cwd: Path, repeat: int, fresh: bool = False) -> Timing:
    """Best of ``repeat`` runs (the least disturbed by other load); peak RSS is the largest.

    ``fresh``: delete trainlint's cache before each run, so that every run is cold.
    """
    runs = []
    for _ in range(repeat):
        if fresh:
            shutil.rmtree(cwd / ".trainlint_cache", ignore_errors=True)
        output = subprocess.run([sys.executable, "-P", "-c", WRAPPER, *command], cwd=cwd, capture_output=True, text=True, check=True)
        runs.append(json.loads(output.stdout))
    seconds = min(run["seconds"] for run in runs)
    peak = max(run["peak_rss_mb"] for run in runs)
    print(f"  {name}: best {seconds:.2f} s of {[round(run['seconds'], 2) for run in runs]}, peak RSS {peak:.0f} MiB", file=sys.stderr)
    return Timing(name, files, seconds, min(run["cpu_seconds"] for run in runs), peak)


def _run_corpus(args: argparse.Namespace, corpus: Path, jobs: int, memory: bool = False) -> list[Timing]:
    """Every tool on ``corpus`` (already copied to a scratch folder)."""
    scratch = corpus.parent / f"{corpus.name}-runs"
    small = sample(corpus, args.torchfix_files, scratch / "torchfix")
    counts = {path: sum(1 for _ in path.rglob("*.py")) for path in (corpus, small)}
    print(f"{corpus.name}: {counts[corpus]} files", file=sys.stderr)
    # -P: the corpus is the working directory, and its modules (torch's ``types.py``...)
    # must not shadow the standard library.
    trainlint = [sys.executable, "-P", "-m", "trainlint", "check", "--exit-zero", "--format", "concise", "--jobs", str(jobs), "."]
    n = args.repeat
    timings = [
        measure("libcst parse", counts[corpus], [sys.executable, "-P", "-c", BARE_PARSE, ".", str(jobs)], corpus, n),
        measure("trainlint cold", counts[corpus], trainlint, corpus, n, fresh=True),
        measure("trainlint warm", counts[corpus], trainlint, corpus, n),
        measure("trainlint cold, TorchFix sample", counts[small], [*trainlint, "--no-cache"], small, n),
    ]
    if memory:
        timings.extend(_memory(args, scratch, trainlint, n))
    tools = args.tools_venv / "bin"
    if (tools / "ruff").exists():
        timings.append(measure("ruff", counts[corpus], [str(tools / "ruff"), "check", "--no-cache", "--exit-zero", "-q", "."], corpus, n))
    if (tools / "torchfix").exists():
        timings.append(measure("TorchFix", counts[small], [str(tools / "torchfix"), "--jobs", str(jobs), "."], small, n))
    return timings


def _memory(args: argparse.Namespace, scratch: Path, trainlint: list[str], n: int) -> list[Timing]:
    """Memory against file count: the same files once, twice and 4 times (copies), so that
    the largest file, which sets the peak of any parser, is the same in every run."""
    once = sample(args.corpus, args.files // 2, scratch / "once" / "a")
    twice, four = scratch / "twice", scratch / "four"
    for copy in "ab":
        shutil.copytree(once, twice / copy)
    for copy in "abcd":
        shutil.copytree(once, four / copy)
    counts = {path: sum(1 for _ in path.rglob("*.py")) for path in (once, twice, four)}
    return [
        measure("trainlint, half sample once", counts[once], [*trainlint, "--no-cache"], once, n),
        measure("trainlint, half sample twice", counts[twice], [*trainlint, "--no-cache"], twice, n),
        measure("trainlint, half sample 4 times", counts[four], [*trainlint, "--no-cache"], four, n),
    ]


def _report(results: dict[str, list[Timing]], jobs: int, json_path: Path | None) -> None:
    figures: dict[str, object] = {"jobs": jobs}
    for corpus, timings in results.items():
        print(f"\n### {corpus}\n\n| tool | files | wall s | CPU s | files/s (wall) | peak RSS (MiB) |\n|---|---:|---:|---:|---:|---:|")
        for t in timings:
            print(f"| {t.name} | {t.files} | {t.seconds:.2f} | {t.cpu_seconds:.2f} | {t.files_per_second:.0f} | {t.peak_rss_mb:.0f} |")
        ratios = _ratios({t.name: t for t in timings})
        print(f"\n{jobs} process(es). Ratios:")
        for name, value in ratios.items():
            print(f"- {name}: {value:.2f}")
        figures[corpus] = {"timings": [asdict(t) for t in timings], "ratios": ratios}
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2))


def _ratios(by_name: dict[str, Timing]) -> dict[str, float]:
    cold, parse = by_name["trainlint cold"], by_name["libcst parse"]
    ratios = {
        "cold / libcst parse (wall)": cold.seconds / parse.seconds,
        "cold / libcst parse (CPU)": cold.cpu_seconds / parse.cpu_seconds,
        "warm / cold (wall)": by_name["trainlint warm"].seconds / cold.seconds,
    }
    if "trainlint, half sample twice" in by_name:
        once, twice, four = (by_name[f"trainlint, half sample {n}"] for n in ("once", "twice", "4 times"))
        ratios["peak RSS, 2x files / 1x files"] = twice.peak_rss_mb / once.peak_rss_mb
        # Once the bounded per-process caches are full, more files must cost no more memory.
        ratios["peak RSS, 4x files / 2x files"] = four.peak_rss_mb / twice.peak_rss_mb
    if "TorchFix" in by_name:
        small = by_name["trainlint cold, TorchFix sample"]
        ratios["TorchFix / trainlint, same sample (wall)"] = by_name["TorchFix"].seconds / small.seconds
        ratios["TorchFix / trainlint, same sample (CPU)"] = by_name["TorchFix"].cpu_seconds / small.cpu_seconds
    if "ruff" in by_name:
        ratios["trainlint cold / ruff (wall)"] = cold.seconds / by_name["ruff"].seconds
    return ratios


if __name__ == "__main__":
    main()
