"""What the installed (but not enabled) lpo-ci pytest plugin costs every pytest run.

pytest loads ``lpo_ci.plugin`` through its ``pytest11`` entry point in every
project of an environment where lpo-ci is installed, so its import and its
hooks must be nearly free when ``--lpo`` is not given. Measured here:

1. ``pytest --version`` and a trivial suite (20 passing tests, ``pytest -q -p
   no:cacheprovider``) with the plugin installed vs blocked with ``-p
   no:lpo_ci``: medians over alternating runs (ABBA order, so drift cancels),
   difference in ms and ratio. Target: difference < 50 ms.
   For context only (not gated): the same suite with ``--lpo`` on, where the
   plugin reads its settings but finds no templates.
2. ``python -X importtime -c "import lpo_ci.plugin"``: total import time, and
   the part that is lpo-ci's own once pytest is already imported.
3. That importing the plugin, and a pytest run with it installed, import none
   of litellm, datasets, jinja2, yaml (checked in ``sys.modules``).

Run from the repository root::

    python benchmarks/bench_plugin_overhead.py            # 15 runs of each
    python benchmarks/bench_plugin_overhead.py --runs 31 --strict

Exit status: 0 ok; 1 a heavy module was imported or a run failed; 2 (with
--strict) an overhead reached the target.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("litellm", "datasets", "jinja2", "yaml")
PYPROJECT = '[project]\nname = "trivial"\nversion = "0"\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n'


def trivial_suite(n: int) -> str:
    lines = ["import pytest", ""]
    for i in range(n):
        lines += [f"def test_trivial_{i}():", f"    assert {i} + 1 == {i + 1}", ""]
    return "\n".join(lines)


MODULES_PROBE = """\
import json, os, sys

HEAVY = {heavy!r}


def test_heavy_modules_absent():
    loaded = sorted(m for m in HEAVY if m in sys.modules)
    with open(os.environ["LPO_BENCH_PROBE_OUT"], "w") as handle:
        json.dump({{"loaded": loaded, "lpo_ci_modules": sorted(m for m in sys.modules
                   if m == "lpo_ci" or m.startswith("lpo_ci."))}}, handle)
"""


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    return env


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stdout[-2000:]}"
                           f"\n{proc.stderr[-2000:]}")
    return elapsed


def compare(name: str, on: list[str], off: list[str], cwd: Path, runs: int, env) -> dict:
    """Medians of `on` and `off` over alternating runs, after one discarded warm-up of each."""
    timed(on, cwd, env)
    timed(off, cwd, env)
    times = {"on": [], "off": []}
    for i in range(runs):
        order = (("on", on), ("off", off)) if i % 2 == 0 else (("off", off), ("on", on))
        for key, command in order:
            times[key].append(timed(command, cwd, env))
    on_ms = statistics.median(times["on"]) * 1000
    off_ms = statistics.median(times["off"]) * 1000
    return {"name": name, "on": on_ms, "off": off_ms, "diff": on_ms - off_ms, "ratio": on_ms / off_ms,
            "on_min": min(times["on"]) * 1000, "off_min": min(times["off"]) * 1000}


def parse_importtime(stderr: str) -> list[tuple[int, int, int, str]]:
    """(self us, cumulative us, depth, module) for each line of -X importtime output."""
    rows = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match[1]), int(match[2]), len(match[3]) // 2, match[4]))
    return rows


def import_times(env) -> dict:
    """Total import time of the plugin, alone and on top of an already imported pytest (min of 7)."""
    def measure(code: str) -> tuple[int, int, list]:
        best = None
        for _ in range(7):
            proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env,
                                  capture_output=True, text=True, check=True)
            rows = parse_importtime(proc.stderr)
            total = sum(self_us for self_us, _, _, _ in rows)
            own = sum(self_us for self_us, _, _, name in rows
                      if name == "lpo_ci" or name.startswith("lpo_ci."))
            if best is None or total < best[0]:
                best = (total, own, rows)
        return best

    alone_total, alone_own, alone_rows = measure("import lpo_ci.plugin")
    # pytest's share of that same run: the cumulative time of its top-level 'pytest' entry.
    pytest_total = max((cumulative for _, cumulative, _, name in alone_rows if name == "pytest"), default=0)
    marginal_total, marginal_own, marginal_rows = measure("import pytest; import lpo_ci.plugin")
    # Modules that lpo_ci.plugin pulls in beyond pytest: those imported after pytest's tree.
    names_with_pytest = {name for _, _, _, name in measure("import pytest")[2]}
    extra = [(self_us, name) for self_us, _, _, name in marginal_rows if name not in names_with_pytest]
    return {"alone_total": alone_total, "alone_own": alone_own, "pytest_total": pytest_total,
            "with_pytest_total": marginal_total, "marginal": sum(us for us, _ in extra),
            "marginal_own": marginal_own, "extra_modules": extra}


def heavy_modules_check(suite_dir: Path, env) -> dict:
    """Which heavy modules are in sys.modules after importing the plugin, and inside a pytest run."""
    code = (f"import json, sys; import lpo_ci.plugin; "
            f"print(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))")
    after_import = json.loads(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                             text=True, check=True).stdout)
    probe_dir = suite_dir.parent / "probe"
    probe_dir.mkdir(exist_ok=True)
    (probe_dir / "pyproject.toml").write_text('[project]\nname = "probe"\nversion = "0"\n')
    (probe_dir / "test_probe.py").write_text(MODULES_PROBE.format(heavy=HEAVY))
    results = {}
    for label, extra in (("pytest run, plugin installed", []),
                         ("pytest run with --lpo (no templates)", ["--lpo"])):
        out = probe_dir / "out.json"
        out.unlink(missing_ok=True)
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra],
                       cwd=probe_dir, env={**env, "LPO_BENCH_PROBE_OUT": str(out)},
                       capture_output=True, text=True, check=True)
        results[label] = json.loads(out.read_text())
    return {"after_import": after_import, "runs": results}


def print_table(headers, rows) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each variant (default 15)")
    parser.add_argument("--tests", type=int, default=20, help="trivial tests in the suite (default 20)")
    parser.add_argument("--target-ms", type=float, default=50.0, help="max added time, ms (default 50)")
    parser.add_argument("--strict", action="store_true", help="exit 2 if an overhead reaches the target")
    args = parser.parse_args(argv)

    env = clean_env()
    check = subprocess.run([sys.executable, "-m", "pytest", "--version", "-p", "no:lpo_ci"], env=env,
                           capture_output=True, text=True)
    if check.returncode != 0:
        print(f"pytest not runnable: {check.stderr}", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="lpo-plugin-bench-"))
    problems: list[str] = []
    try:
        suite = workdir / "suite"
        (suite / "tests").mkdir(parents=True)
        (suite / "pyproject.toml").write_text(PYPROJECT)
        (suite / "tests" / "test_trivial.py").write_text(trivial_suite(args.tests))
        pytest = [sys.executable, "-m", "pytest"]
        run = [*pytest, "-q", "-p", "no:cacheprovider"]
        print(f"lpo-ci plugin overhead: medians of {args.runs} alternating runs each, "
              f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        results = [
            compare("pytest --version", [*pytest, "--version"], [*pytest, "--version", "-p", "no:lpo_ci"],
                    suite, args.runs, env),
            compare(f"pytest -q ({args.tests} trivial tests)", run, [*run, "-p", "no:lpo_ci"],
                    suite, args.runs, env),
        ]
        context = compare("  context: same suite with --lpo", [*run, "--lpo"], [*run, "-p", "no:lpo_ci"],
                          suite, args.runs, env)
        rows = []
        for r in (*results, context):
            gated = r is not context
            rows.append([r["name"], f"{r['off']:.0f}", f"{r['on']:.0f}", f"{r['diff']:+.1f}",
                         f"{r['ratio']:.3f}", f"{r['on_min'] - r['off_min']:+.1f}",
                         ("ok" if r["diff"] < args.target_ms else "MISS") if gated else "-"])
        print()
        print_table(["command", "disabled ms", "installed ms", "diff ms", "ratio", "diff of mins",
                     f"<{args.target_ms:g} ms"], rows)

        times = import_times(env)
        print()
        print(f'python -X importtime -c "import lpo_ci.plugin": total {times["alone_total"] / 1000:.1f} ms, '
              f'of which pytest {times["pytest_total"] / 1000:.1f} ms and lpo_ci\'s own modules '
              f'{times["alone_own"] / 1000:.2f} ms (best of 7)')
        extra = ", ".join(f"{name} {us / 1000:.2f}" for us, name in
                          sorted(times["extra_modules"], reverse=True)[:8]) or "none"
        print(f"on top of an imported pytest: +{times['marginal'] / 1000:.2f} ms for the modules it adds "
              f"(ms, self time): {extra}")

        modules = heavy_modules_check(suite, env)
        print()
        print("heavy modules in sys.modules (" + ", ".join(HEAVY) + "):")
        loaded = [m for m, present in modules["after_import"].items() if present]
        print(f"  after 'import lpo_ci.plugin': {', '.join(loaded) or 'none'}")
        if loaded:
            problems.append(f"importing lpo_ci.plugin imports {', '.join(loaded)}")
        for label, data in modules["runs"].items():
            print(f"  {label}: {', '.join(data['loaded']) or 'none'} "
                  f"(lpo_ci modules: {', '.join(data['lpo_ci_modules']) or 'none'})")
            if data["loaded"] and "--lpo" not in label:
                problems.append(f"{label}: imports {', '.join(data['loaded'])}")
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        problems.append(str(exc) + (f"\n{exc.stderr}" if getattr(exc, "stderr", None) else ""))
        results = []
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    if problems:
        return 1
    if args.strict and any(r["diff"] >= args.target_ms for r in results):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
