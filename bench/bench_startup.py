"""Start-up time of `trainlint check` on one small file, as a user (or a pre-commit hook)
sees it: a fresh process each time.

Cases:
- warm: the file's result is in the cache (the common case for hooks and re-runs);
- cold, no parse: nothing in the file can trigger a rule, so only its syntax is checked;
- cold, parsed: a small training loop that the rules analyse (imports libcst and the rules).

Reports the best wall time and the CPU time (user + system) of that run, over --runs runs
(best-of, because a shared machine adds noise, never removes it). Also times `python -c
pass` and `import libcst` alone, the floors that no change to trainlint can lower.

    python bench/bench_startup.py [--runs 7] [--markdown bench/results/bench_startup.md]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.25  # seconds, wall, for the warm small-file run
SMALL = {
    "warm": "import torch\nfor x, y in loader:\n    loss = model(x).sum()\n    loss.backward()\n    opt.step()\n    opt.zero_grad()\n",
    "cold, no parse": "import os\n\n\ndef main():\n    print(os.getcwd())\n",
    "cold, parsed": "import torch\nfor x, y in loader:\n    loss = model(x).sum()\n    loss.backward()\n    opt.step()\n    opt.zero_grad()\n",
}


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def best(command: list[str], cwd: Path, runs: int, prepare: bool = False) -> tuple[float, float]:
    results = []
    for _ in range(runs):
        if prepare:
            shutil.rmtree(cwd / ".trainlint_cache", ignore_errors=True)
        results.append(timed(command, cwd))
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    trainlint = shutil.which("trainlint") or sys.exit("trainlint is not on PATH (pip install -e .)")
    rows = [
        ("python -c pass", best([sys.executable, "-c", "pass"], Path.cwd(), args.runs)),
        ("python -c 'import libcst'", best([sys.executable, "-c", "import libcst"], Path.cwd(), args.runs)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for case, source in SMALL.items():
            (root / "small.py").write_text(source)
            command = [trainlint, "check", "small.py"]
            if case == "warm":
                timed(command, root)  # fills the cache
            rows.append((f"trainlint check small.py ({case})", best(command, root, args.runs, prepare=case != "warm")))
    lines = [
        f"trainlint start-up, best of {args.runs} runs (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f})",
        "",
        "| command | wall s | CPU s |",
        "|---|---:|---:|",
        *(f"| {name} | {wall:.3f} | {cpu:.3f} |" for name, (wall, cpu) in rows),
        "",
        f"warm small-file run ≤ {TARGET} s: {'met' if rows[2][1][0] <= TARGET else 'NOT met'}",
    ]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
