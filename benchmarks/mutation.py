"""Mutation testing of the verdict logic: do the unit tests notice when the code changes?

Each module below is parsed, and one small change at a time is made to its syntax
tree (a mutant): a comparison flipped at its boundary (``<`` and ``<=``, ``==`` and
``!=``, ``is``/``is not``, ``in``/``not in``), ``and`` and ``or`` swapped, a condition
negated, a number or boolean constant changed, a returned value replaced by None, a
statement deleted. The mutant is written into a private copy of the repository and
the module's own fast unit tests run against it: a failing run kills the mutant, one
that runs past a time limit (a loop that no longer ends) counts as killed by timeout
once a second run with four times the limit times out too (a machine under load must
not turn a survivor into a kill), a passing one survives. Score = (killed + timeout) / mutants.

Docstrings, string constants (messages), imports, type annotations and
``if TYPE_CHECKING`` blocks are not mutated. Survivors are listed with their line,
so each can be killed by a test or argued equivalent.

Run from the repository root (two mutants at a time by default; not part of CI)::

    python benchmarks/mutation.py                       # every module, the table
    python benchmarks/mutation.py --module gate --survivors
    python benchmarks/mutation.py --list --module lpo_ci/stats.py   # the mutants only
    python benchmarks/mutation.py --module lpo_ci/stats.py --index 12 --index 24   # those two again

Exit status: 0 when every module scores at least --target (default 0.9), else 1.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# module (or package) -> the fast unit tests that own it; -k drops tests whose subject is speed.
# The answer-reading modules of lpo_ci/scoring/ (answers, numbers, options: 1,400 mutants) run
# with --module lpo_ci/scoring/ (see EXTRA); the default set is the verdict logic.
TARGETS: dict[str, tuple[list[str], str]] = {
    "lpo_ci/gate.py": (["tests/test_gate.py"], ""),
    "lpo_ci/stats.py": (["tests/test_gate.py"], ""),
    "lpo_ci/scoring/__init__.py": (["tests/test_scoring.py"], "not megabyte"),
    "lpo_ci/patch.py": (["tests/test_patch.py"], ""),
    "lpo_ci/editable.py": (["tests/test_editable.py"], ""),
    "lpo_ci/cache.py": (["tests/test_cache.py"], ""),
    "lpo_ci/optimize/budget.py": (["tests/test_budget.py"], ""),
}

EXTRA: dict[str, tuple[list[str], str]] = {
    "lpo_ci/scoring": (["tests/test_scoring.py", "tests/test_lm_eval_modes.py"], "not megabyte"),
}

FLIPPED_COMPARISON = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
                      ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
                      ast.NotIn: ast.In}


@dataclass
class Mutant:
    path: str
    index: int
    line: int
    description: str
    outcome: str = ""  # killed, timeout, survived
    seconds: float = 0.0


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                found.add(id(first))
    return found


def _skipped_subtrees(tree: ast.AST) -> set[int]:
    """Nodes never mutated: annotations, imports, TYPE_CHECKING blocks, docstrings, f-string parts."""
    skipped: set[int] = set()

    def skip(node: ast.AST | None) -> None:
        if node is not None:
            skipped.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.JoinedStr)):
            skip(node)
        elif isinstance(node, ast.AnnAssign):
            skip(node.annotation)
        elif isinstance(node, ast.arg):
            skip(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            skip(node.returns)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip(node)
    for doc in _docstring_nodes(tree):
        skipped.add(doc)
    return skipped


class Mutator(ast.NodeTransformer):
    """Counts the mutation sites in order; with ``target`` set, applies that one mutation."""

    def __init__(self, tree: ast.AST, target: int = -1):
        self.target = target
        self.count = 0
        self.sites: list[tuple[int, str]] = []
        self.skipped = _skipped_subtrees(tree)
        self.applied = False

    def _site(self, node: ast.AST, description: str) -> bool:
        index = self.count
        self.count += 1
        self.sites.append((getattr(node, "lineno", 0), description))
        if index == self.target:
            self.applied = True
            return True
        return False

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if id(node) in self.skipped:
            return node
        return super().generic_visit(node)

    # comparison flipped at its boundary
    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if id(node) in self.skipped:
            return node
        for position, op in enumerate(node.ops):
            flipped = FLIPPED_COMPARISON.get(type(op))
            if flipped and self._site(node, f"{type(op).__name__} -> {flipped.__name__}"):
                node.ops[position] = flipped()
        return node

    # and <-> or
    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        self.generic_visit(node)
        if id(node) in self.skipped:
            return node
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        if self._site(node, f"{type(node.op).__name__} -> {type(other).__name__}"):
            node.op = other
        return node

    # negated conditions
    def _negate_test(self, node: ast.If | ast.While | ast.IfExp | ast.Assert, kind: str) -> None:
        if id(node) not in self.skipped and self._site(node, f"negate the {kind} condition"):
            node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)

    def visit_If(self, node: ast.If) -> ast.AST:
        self.generic_visit(node)
        self._negate_test(node, "if")
        return node

    def visit_While(self, node: ast.While) -> ast.AST:
        self.generic_visit(node)
        self._negate_test(node, "while")
        return node

    def visit_IfExp(self, node: ast.IfExp) -> ast.AST:
        self.generic_visit(node)
        self._negate_test(node, "conditional expression")
        return node

    # constants
    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if id(node) in self.skipped:
            return node
        value = node.value
        if isinstance(value, bool):
            if self._site(node, f"{value} -> {not value}"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int):
            if self._site(node, f"{value} -> {value + 1}"):
                return ast.copy_location(ast.Constant(value + 1), node)
        elif isinstance(value, float):
            changed = value * 2 if value else 1.0
            if self._site(node, f"{value} -> {changed}"):
                return ast.copy_location(ast.Constant(changed), node)
        return node

    # a returned value replaced by None
    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        if id(node) in self.skipped or node.value is None:
            return node
        if isinstance(node.value, ast.Constant) and node.value.value is None:
            return node
        if self._site(node, "return None"):
            node.value = ast.Constant(None)
        return node

    # statements deleted (replaced by pass), in every body
    def _bodies(self, node: ast.AST) -> ast.AST:
        for name in ("body", "orelse", "finalbody"):
            statements = getattr(node, name, None)
            if not isinstance(statements, list) or isinstance(node, ast.Module) and name == "body":
                continue
            for position, statement in enumerate(statements):
                if id(statement) in self.skipped or isinstance(statement, (ast.Pass, ast.FunctionDef,
                                                                           ast.AsyncFunctionDef, ast.ClassDef)):
                    continue
                if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                    continue
                if isinstance(statement, ast.Return):  # "return None" is that mutant already
                    continue
                if self._site(statement, f"delete the {type(statement).__name__.lower()} statement"):
                    statements[position] = ast.copy_location(ast.Pass(), statement)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self.generic_visit(node)
        return self._bodies(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_For(self, node: ast.For) -> ast.AST:
        self.generic_visit(node)
        return self._bodies(node)

    def visit_With(self, node: ast.With) -> ast.AST:
        self.generic_visit(node)
        return self._bodies(node)

    def visit_Try(self, node: ast.Try) -> ast.AST:
        self.generic_visit(node)
        for handler in node.handlers:
            self._bodies(handler)
        return self._bodies(node)


# visit_If/While must also walk their bodies for deletion
def _with_bodies(method):
    def visit(self, node):
        node = method(self, node)
        return self._bodies(node)
    return visit


Mutator.visit_If = _with_bodies(Mutator.visit_If)  # type: ignore[method-assign]
Mutator.visit_While = _with_bodies(Mutator.visit_While)  # type: ignore[method-assign]


def mutants_of(path: Path) -> list[Mutant]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mutator = Mutator(tree)
    mutator.visit(tree)
    rel = path.relative_to(REPO).as_posix()
    return [Mutant(rel, i, line, description) for i, (line, description) in enumerate(mutator.sites)]


def mutated_source(path: Path, index: int) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mutator = Mutator(tree, index)
    tree = mutator.visit(tree)
    assert mutator.applied, f"mutant {index} of {path} not applied"
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def module_files(target: str) -> list[Path]:
    path = REPO / target
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


class Workspace:
    """A private copy of the repository a worker writes its mutants into."""

    def __init__(self, root: Path):
        self.root = root
        for name in ("lpo_ci", "tests", "templates", "examples"):
            shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")

    def run_tests(self, tests: list[str], keyword: str, timeout: float) -> tuple[str, float]:
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                   "-m", "not slow", *tests]
        if keyword:
            command += ["-k", keyword]
        # child processes of the tests (spawned workers, python -c) import the mutated copy too
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(self.root)}
        started = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", time.perf_counter() - started
        # any failure counts, a mutant that breaks the import (a collection error) too
        return ("survived" if done.returncode == 0 else "killed"), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", action="append", help="a module of TARGETS (or part of its path)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--index", type=int, action="append",
                        help="run only this mutant (its #number in --list; with one --module)")
    args = parser.parse_args()
    chosen = {k: v for k, v in TARGETS.items() if not args.module or any(m in k for m in args.module)}
    if args.module and not chosen:
        chosen = {k: v for k, v in EXTRA.items() if any(m.rstrip("/") == k for m in args.module)}
    plan: list[tuple[Mutant, list[str], str]] = []
    for target, (tests, keyword) in chosen.items():
        for path in module_files(target):
            plan += [(m, tests, keyword) for m in mutants_of(path)]
    if args.index:
        plan = [item for item in plan if item[0].index in args.index]
    if args.list:
        for mutant, _, _ in plan:
            print(f"{mutant.path}:{mutant.line}: #{mutant.index} {mutant.description}")
        print(f"{len(plan)} mutants")
        return 0

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stopped: the scratch copies are removed
    scratch = Path(tempfile.mkdtemp(prefix="lpo-ci-mutation-"))
    workspaces: list[Workspace] = []
    free: list[Workspace] = []
    lock = threading.Lock()
    try:
        for number in range(args.workers):
            workspaces.append(Workspace(scratch / f"w{number}"))
        free = list(workspaces)
        # the unmutated tests must pass, and set the time limit
        limits: dict[str, float] = {}
        for target, (tests, keyword) in chosen.items():
            outcome, seconds = workspaces[0].run_tests(tests, keyword, timeout=600)
            if outcome != "survived":
                print(f"the tests of {target} fail without any mutant: fix them first", file=sys.stderr)
                return 1
            limits[target] = max(10.0, seconds * 3)
            print(f"{target}: baseline {seconds:.1f} s, time limit {limits[target]:.0f} s", file=sys.stderr)

        def target_of(mutant: Mutant) -> str:
            return next(t for t in chosen if mutant.path == t or mutant.path.startswith(t + "/"))

        def run(item: tuple[Mutant, list[str], str]) -> Mutant:
            mutant, tests, keyword = item
            with lock:
                workspace = free.pop()
            try:
                original = REPO / mutant.path
                destination = workspace.root / mutant.path
                destination.write_text(mutated_source(original, mutant.index), encoding="utf-8")
                try:
                    limit = limits[target_of(mutant)]
                    mutant.outcome, mutant.seconds = workspace.run_tests(tests, keyword, limit)
                    if mutant.outcome == "timeout":  # slow because the machine is busy, or a loop without end?
                        mutant.outcome, mutant.seconds = workspace.run_tests(tests, keyword, limit * 4)
                finally:
                    shutil.copy(original, destination)
            finally:
                with lock:
                    free.append(workspace)
            return mutant

        started = time.perf_counter()
        done_count = 0
        with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
            for mutant in pool.map(run, plan):
                done_count += 1
                if mutant.outcome in ("survived", "timeout") and args.survivors:  # as found, for a long run
                    print(f"  {mutant.outcome}: {mutant.path}:{mutant.line}: #{mutant.index} {mutant.description}",
                          file=sys.stderr)
                if done_count % 25 == 0:
                    print(f"  {done_count}/{len(plan)} mutants, {time.perf_counter() - started:.0f} s",
                          file=sys.stderr)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    rows = []
    ok = True
    for target in chosen:
        mine = [m for m, _, _ in plan if m.path == target or m.path.startswith(target + "/")]
        killed = sum(m.outcome == "killed" for m in mine)
        timeout = sum(m.outcome == "timeout" for m in mine)
        survived = sum(m.outcome == "survived" for m in mine)
        score = (killed + timeout) / len(mine) if mine else 1.0
        ok = ok and score >= args.target
        rows.append((target, len(mine), killed, timeout, survived, f"{score:.1%}"))
    header = ("module", "mutants", "killed", "timeout", "survived", "score")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    total = len(plan)
    caught = sum(m.outcome in ("killed", "timeout") for m, _, _ in plan)
    print(f"all: {caught}/{total} = {caught / total:.1%} in {time.perf_counter() - started:.0f} s")
    if args.survivors:
        for outcome in ("survived", "timeout"):
            listed = [m for m, _, _ in plan if m.outcome == outcome]
            if listed:
                print(f"\n{outcome}:")
            for mutant in listed:
                print(f"  {mutant.path}:{mutant.line}: #{mutant.index} {mutant.description}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
