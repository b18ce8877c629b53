"""Lint time against file size, on one generated training script (bench/gen_large.py).

For each size it times, in a fresh process each:
- ``infrastructure``: the pre-scan and parse, the index and the positions of every call,
  which must grow linearly with the file;
- ``trainlint check``: everything (rules included), stopped after ``--timeout`` seconds.

    python bench/bench_large.py                         # 125 KB to 5 MB; Markdown table
    python bench/bench_large.py --sizes 1000 --timeout 60

Peak RSS is the child's (``getrusage``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gen_large  # noqa: E402 - a sibling script

# Runs a command (its worker processes included: a session of its own, killed as a whole
# on timeout), then prints its wall time, CPU time and peak RSS.
WRAPPER = """
import json, os, resource, signal, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
try:
    code = process.wait(timeout=float(sys.argv[1]))
except subprocess.TimeoutExpired:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    code = None
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "peak_rss_mb": usage.ru_maxrss / 1024, "exit": code}))
"""

INFRASTRUCTURE = """
import sys
from pathlib import Path
import libcst as cst
from trainlint.analysis.module import ModuleModel
from trainlint.analysis.parsing import parse
from trainlint.deep import run_deep

def index():
    model = ModuleModel(Path(sys.argv[1]), parse(Path(sys.argv[1]).read_text()), "large", "")
    for call in model.calls:
        model.span_of(call)

run_deep(index)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[125, 250, 1000, 5000], help="file sizes in KB")
    parser.add_argument("--timeout", type=float, default=600, help="seconds before a check is stopped")
    args = parser.parse_args()
    print("| size | infrastructure s | infrastructure peak RSS (MiB) | trainlint check s | CPU s | peak RSS (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="trainlint-large-") as scratch:
        for size in args.sizes:
            # A folder of its own: sibling files take part in the analysis.
            folder = Path(scratch) / f"{size}kb"
            folder.mkdir()
            path = folder / "train.py"
            path.write_text(gen_large.generate(size), encoding="utf-8")
            infra = _measure(args.timeout, [sys.executable, "-c", INFRASTRUCTURE, str(path)], folder)
            check = _measure(args.timeout, [sys.executable, "-m", "trainlint", "check", "--no-cache", "--exit-zero", path.name], folder)
            seconds = f"{check['seconds']:.1f}" if check["exit"] is not None else f"> {args.timeout:.0f} (stopped)"
            print(
                f"| {path.stat().st_size / 1e6:.2f} MB | {infra['seconds']:.1f} | {infra['peak_rss_mb']:.0f} "
                f"| {seconds} | {check['cpu_seconds']:.1f} | {check['peak_rss_mb']:.0f} |",
                flush=True,
            )


def _measure(timeout: float, command: list[str], cwd: Path) -> dict[str, float]:
    output = subprocess.run([sys.executable, "-c", WRAPPER, str(timeout), *command], cwd=cwd, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(output.stdout)
    return result


if __name__ == "__main__":
    main()
