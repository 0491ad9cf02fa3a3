"""The README's tour, timed: its commands as written, offline, on the embedded model.

Target: the whole tour in under a minute on two cores (the first command makes
every model call; the others read the cache). It also measures what the
defaults for base models buy, as a ratio in one run: the tour's first command
on a few examples with the defaults (completion mode, the template's stops, a
short answer budget) against the same with the settings that were the
defaults before (chat mode, 256 tokens, no stop).

    LPO_CI_DATA_DIR=/path/to/mirror python benchmarks/bench_tour.py [--compare-samples 10] [--strict]

Exit status 1 when a command fails, 2 with --strict when the tour takes a minute
or more.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_SECONDS = 60.0
OLD_DEFAULTS = 'mode = "chat"\nmax_tokens = 256\n'


def _env() -> dict:
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "PYTEST_", "CI"))}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}")
    return env


def _run(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    run = subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True)
    if run.returncode != 0:
        print(run.stdout + run.stderr)
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - started


def _head(folder: Path) -> dict:
    return json.loads((folder / "r.json").read_text())["templates"][0]["head"]


def main() -> int:
    from tests.support.readme_tour import write_tour

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-samples", type=int, default=10, help="examples for the defaults comparison")
    parser.add_argument("--strict", action="store_true", help="exit 2 when the tour misses its target")
    args = parser.parse_args()
    if not os.environ.get("LPO_CI_DATA_DIR"):
        raise SystemExit("set LPO_CI_DATA_DIR to a local mirror of the benchmark data (the tour runs offline)")

    with tempfile.TemporaryDirectory(prefix="lpo-ci-tour-") as scratch:
        folder = Path(scratch) / "tour"
        folder.mkdir()
        commands = write_tour(folder)
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(f"{'seconds':>8}  command")
        times = []
        for command in commands:
            times.append(_run(command, folder))
            print(f"{times[-1]:8.1f}  {' '.join(command)}")
        total = sum(times)
        head = json.loads((folder / "lpo-report.json").read_text())["templates"][0]["head"]
        print(f"{total:8.1f}  the whole tour (target < {TARGET_SECONDS:.0f} s): accuracy {head['accuracy']:.1%} "
              f"on {head['n']}, {head['format_failures']} format failures")

        results = {}
        for name, extra in (("defaults", ""), ("before", OLD_DEFAULTS)):
            other = Path(scratch) / name
            other.mkdir()
            write_tour(other)
            with open(other / "pyproject.toml", "a", encoding="utf-8") as handle:
                handle.write(extra)
            seconds = _run(["pytest", "-p", "no:cacheprovider", "--lpo", f"--lpo-max-samples={args.compare_samples}",
                            "--lpo-report=r.json"], other)
            results[name] = (seconds, _head(other))
        print(f"\n{args.compare_samples} examples, first command of the tour:")
        print(f"{'setup':<40} {'seconds':>8} {'completion tokens':>18} {'accuracy':>9} {'format failures':>16}")
        for name, label in (("defaults", "base-model defaults (this version)"),
                            ("before", "chat, max_tokens 256, no stop (before)")):
            seconds, h = results[name]
            print(f"{label:<40} {seconds:8.1f} {h['usage']['completion_tokens']:>18} {h['accuracy']:>9.1%} "
                  f"{h['format_failures']:>16}")
        ratio = results["before"][0] / results["defaults"][0]
        print(f"before / defaults wall time: {ratio:.1f}x")
    return 2 if args.strict and total >= TARGET_SECONDS else 0


if __name__ == "__main__":
    sys.exit(main())
