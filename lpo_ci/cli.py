"""The ``lpo-ci`` command: the same runner as the pytest plugin, one template at a time."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Iterator

from .errors import EXIT_ERROR, EXIT_FAIL, EXIT_OK, EXIT_USAGE, exit_status
from .progress import progress_bar


def _project_root(start: Path) -> Path:
    """The nearest folder with a pyproject.toml (else the git top level, else ``start``)."""
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() or (folder / ".git").exists():
            return folder
    return start


def check_template_path(path: Path) -> None:
    """A template argument must be an existing file."""
    from .errors import SpecError

    if path.is_dir():
        raise SpecError("is a directory, not a template file", path=path,
                        hint="name the template files, e.g. prompts/*.j2")
    if not path.is_file():
        raise SpecError("no such template file", path=path, hint="check the path")


def _open_project(args: argparse.Namespace, templates: list[str], overrides: dict):
    """Settings of the project holding ``templates``, and their resolved paths."""
    from .spec import load_settings

    paths = list(dict.fromkeys(Path(p).resolve() for p in templates))  # a link and its file: once
    root = Path(args.root).resolve() if args.root else _project_root(paths[0].parent)
    overrides = {"cache_dir": args.cache_dir, "data_dir": args.data_dir, "model": args.model, **overrides}
    return load_settings(root, overrides), paths


def _display_path(path: Path, root: Path) -> str:
    """A template's path for the report: relative to the project, else as given."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _failed_template(error: BaseException, template, path: Path, root: Path) -> dict:
    """Say why a template could not be scored, and return its report entry."""
    from .errors import LpoError, internal_error
    from .runner import error_entry, line_in

    message = str(error) if isinstance(error, LpoError) else f"{internal_error(error)} (please report it)"
    print(f"error: {message}", file=sys.stderr)
    relpath = template.relpath if template else _display_path(path, root)
    return error_entry(relpath, template.spec_line if template else line_in(error, relpath),
                       None, template.spec.model if template else None, message)


def _eval(args: argparse.Namespace) -> int:
    """Score every template; one that cannot be scored is an error item, never a stop."""
    from .errors import LpoError
    from .report import build_report, capped_note, check_output, terminal_summary, write_json
    from .runner import Session, failure_text
    from .shard import Shard, assign, shard_note
    from .spec import read_template

    try:
        check_output(args.report, "--report")
        settings, paths = _open_project(args, args.templates, {
            "samples": args.samples, "max_samples": args.max_samples, "seed": args.seed,
            "concurrency": args.concurrency,
            "api_base": args.api_base, "mode": args.mode, "batch_size": args.batch_size})
        session = Session(settings, base_ref=args.base, use_git=not args.no_base, base_option="--base")
        from .history.hook import install

        install(session, fresh=args.fresh)
        session.expect_calls()
        shard_plan = Shard.parse(args.shard, "--shard") if args.shard else None
    except LpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if args.report and not Path(args.report).is_dir():
            write_json(args.report, build_report([], extra={"error": str(exc)}))
        return EXIT_USAGE
    items, worst = [], EXIT_OK
    read: list[tuple[Path, Any, BaseException | None]] = []  # (path, template, why it is unreadable)
    for path in paths:
        try:
            check_template_path(path)
            read.append((path, read_template(settings, path), None))
        except Exception as exc:  # noqa: BLE001 - one template's failure never stops the others
            read.append((path, None, exc))
    shard = None
    if shard_plan is not None:
        mine, record = assign(session, [(t.relpath if t else _display_path(p, settings.root), t)
                                        for p, t, _ in read], shard_plan)
        read = [(p, t, e) for p, t, e in read if (t.relpath if t else _display_path(p, settings.root)) in mine]
        shard = {"shard": record}
        print(shard_note(record), file=sys.stderr)
    for path, template, problem in read:
        try:
            if problem is not None:
                raise problem
            with progress_bar(template.relpath) as bar:
                result = session.run(template, bar)
        except Exception as exc:  # noqa: BLE001 - one template's failure never stops the others
            items.append(_failed_template(exc, template, path, settings.root))
            worst = max(worst, exit_status(exc))
            continue
        items.append(result.to_dict())
        if result.status != "pass":
            print(failure_text(result), file=sys.stderr)
            worst = max(worst, EXIT_FAIL if result.status == "fail" else EXIT_ERROR)
        elif result.warnings:
            print("\n".join(f"{result.template}: warning: {w}" for w in result.warnings), file=sys.stderr)
    notes = session.notes()
    if settings.max_samples is not None:
        notes += filter(None, [capped_note(items, settings.max_samples, "--max-samples")])
    print(terminal_summary(items, notes), end="")
    if args.report:
        write_json(args.report, build_report(items, base_rev=session.base_rev, root=settings.root,
                                             reference=session.reference(),
                                             extra={"warnings": session.warnings(), **(shard or {})}))
    return worst


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .demo import DEFAULT_EXAMPLE, available_examples
    from .spec import POSITIVE_INT, POSITIVE_NUMBER, SEED

    parser = argparse.ArgumentParser(prog="lpo-ci", description=(
        "Test prompt templates like code: score them on a benchmark through litellm and "
        "compare with the base branch."))
    parser.add_argument("--version", action="version", version=f"lpo-ci {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    ev = commands.add_parser("eval", help="score templates and gate them against their base version",
                             description="Exit status: 0 pass, 1 regression, 2 bad input, 3 evaluation error.")
    ev.add_argument("templates", nargs="+", metavar="TEMPLATE", help="template files")
    ev.add_argument("--model", metavar="M",
                    help="litellm model name (overrides [tool.lpo_ci], not the template's spec)")
    ev.add_argument("--samples", type=POSITIVE_INT, metavar="N",
                    help="examples per template, for templates whose spec sets none")
    ev.add_argument("--max-samples", type=POSITIVE_INT, metavar="N",
                    help="at most N examples per template, whatever its spec says (a quick smoke run)")
    ev.add_argument("--seed", type=SEED, metavar="N", help="sampling seed")
    ev.add_argument("--mode", choices=["chat", "completion"], help="chat messages or raw text completion")
    ev.add_argument("--api-base", metavar="URL", help="URL of an OpenAI-compatible server (vLLM, Ollama, llama.cpp)")
    ev.add_argument("--concurrency", type=POSITIVE_INT, metavar="N", help="concurrent model calls")
    ev.add_argument("--batch-size", type=POSITIVE_INT, metavar="N",
                    help="completion mode: up to N prompts per request to a server that takes a list "
                         "(vLLM, llama.cpp's server)")
    base = ev.add_mutually_exclusive_group()
    base.add_argument("--base", metavar="REF", help="git ref of the base version")
    base.add_argument("--no-base", action="store_true", help="do not compare with git; report the head alone")
    ev.add_argument("--report", metavar="FILE", help="write the JSON report to this file")
    ev.add_argument("--cache-dir", metavar="DIR", help="response cache directory")
    ev.add_argument("--data-dir", metavar="DIR", help="local mirror of the benchmark data")
    ev.add_argument("--root", metavar="DIR", help="project root (default: nearest folder with pyproject.toml)")
    ev.add_argument("--fresh", action="store_true", help="ask the model again instead of reading the cache")
    ev.add_argument("--shard", metavar="K/N", help="score only shard K of N of the templates given "
                                                   "(split by expected cost); join with lpo-ci report merge")
    ev.set_defaults(handler=_eval)
    op = commands.add_parser("optimize", help="search for a small edit that raises a template's accuracy",
                             description="Bounded Local Prompt Optimization: scores the template (and its base "
                                         "version), then searches edits of the marked tokens within the budget. "
                                         "Exit status: 0 a suggestion, 1 none, 2 bad input, 3 evaluation error.")
    op.add_argument("template", metavar="TEMPLATE", help="template file")
    op.add_argument("--mode", choices=["local", "global"], default="local",
                    help="local: edit only marked tokens (default); global: all literal text")
    op.add_argument("--budget-calls", type=POSITIVE_INT, default=300, metavar="N",
                    help="model calls (default 300; cached calls are free)")
    op.add_argument("--budget-tokens", type=POSITIVE_INT, metavar="N", help="tokens")
    op.add_argument("--budget-usd", type=POSITIVE_NUMBER, metavar="X", help="dollars")
    op.add_argument("--budget-seconds", type=POSITIVE_NUMBER, metavar="S", help="seconds")
    op.add_argument("--optimizer-model", metavar="M",
                    help="instruction-following model for marks and APE/APO/PE2 proposals "
                         "(default: LLM-free edit operators only)")
    op.add_argument("--rounds", type=POSITIVE_INT, default=3, metavar="N", help="search rounds (default 3)")
    op.add_argument("--beam", type=POSITIVE_INT, default=4, metavar="N", help="beam width (default 4)")
    op.add_argument("--model", metavar="M", help="task model (overrides [tool.lpo_ci], not the template's spec)")
    op.add_argument("--base", metavar="REF", help="git ref of the base version")
    op.add_argument("--seed", type=SEED, default=0, metavar="N", help="search seed")
    op.add_argument("--patch", metavar="FILE", help="write the suggested patch (git apply) to this file")
    op.add_argument("--report", metavar="FILE", help="write the JSON report, with the optimization, to this file")
    op.add_argument("--cache-dir", metavar="DIR", help="response cache directory")
    op.add_argument("--data-dir", metavar="DIR", help="local mirror of the benchmark data")
    op.add_argument("--root", metavar="DIR", help="project root (default: nearest folder with pyproject.toml)")
    op.set_defaults(handler=_optimize)
    demo = commands.add_parser("demo", help="gate a prompt regression end to end on the embedded local model",
                               description="Builds a throwaway git repository from an example project, "
                                           "applies a bad prompt edit as a pull request and runs the gate. "
                                           "Exit status: 0 the demo ran, 2 bad input, 3 evaluation error.")
    demo.add_argument("--example", default=DEFAULT_EXAMPLE, metavar="NAME",
                      help=f"example project: {', '.join(available_examples())} (default: {DEFAULT_EXAMPLE})")
    demo.add_argument("--keep", metavar="DIR", help="build the repository in this folder and keep it")
    demo.add_argument("--cache-dir", metavar="DIR",
                      help="response cache directory (default: ~/.cache/lpo-ci/demo-responses)")
    demo.set_defaults(handler=_demo)
    report = commands.add_parser("report", help="work with JSON reports").add_subparsers(
        dest="report_command", required=True)
    merge = report.add_parser(
        "merge", help="join the reports of shards 1..N of one run into one report",
        description="Checks that the reports come from one run (same commits, lpo-ci version, shard count "
                    "and plan) and that every shard is there exactly once. Exit status: the merged "
                    "verdict, 0 pass, 1 regression, 3 evaluation error (or a shard's pytest run that failed "
                    "outside the verdicts, e.g. a collection error); 2 when the reports cannot be merged.")
    merge.add_argument("reports", nargs="+", help="shard reports (--lpo-report of each --lpo-shard job)")
    merge.add_argument("-o", "--output", required=True, help="write the merged report to this file")
    merge.set_defaults(handler=_report_merge)
    github = commands.add_parser("github", help="publish a report on GitHub").add_subparsers(
        dest="github_command", required=True)
    pub = github.add_parser(
        "publish", help="job summary, annotations, sticky PR comment and suggestions from a JSON report",
        description="Reads GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_EVENT_PATH and GITHUB_API_URL as a GitHub "
                    "Actions runner sets them. Posting is best effort; the exit status is the report's "
                    "verdict: 0 pass, 1 regression, 2 bad input, 3 evaluation error.")
    pub.add_argument("--report", required=True, metavar="FILE",
                     help="the JSON report (--lpo-report or lpo-ci eval --report)")
    pub.add_argument("--patch", metavar="FILE", help="write the suggested fixes as one patch (git apply) to this file")
    pub.add_argument("--no-comment", dest="comment", action="store_false", help="do not post the sticky comment")
    pub.add_argument("--no-suggestions", dest="suggestions", action="store_false",
                     help="do not post review suggestions")
    pub.add_argument("--repo", metavar="OWNER/NAME", help="owner/name (default: $GITHUB_REPOSITORY)")
    pub.add_argument("--pr", type=int, metavar="N", help="pull request number (default: from the event); the PR's head "
                                            "must then be --head-sha (default: the workflow_run's head)")
    pub.add_argument("--head-sha", metavar="SHA", help="the commit that was evaluated")
    pub.add_argument("--api-url", metavar="URL", help="GitHub API URL (default: $GITHUB_API_URL, else api.github.com)")
    pub.add_argument("--pytest-exit-code", type=int, metavar="N",
                     help="exit status of the pytest run that wrote the report")
    pub.add_argument("--comment-key", metavar="KEY",
                     help="key of the sticky comment (default: the project folder, workflow and job)")
    pub.add_argument("--project-dir", metavar="DIR",
                     help="the project's folder in the repository (default: the report's, or "
                          "with an untrusted report the current directory's)")
    pub.add_argument("--prompts", action="append", default=[], metavar="GLOB",
                     help="template glob the evaluation used (repeat)")
    pub.add_argument("--untrusted-report", action="store_true",
                     help="the report comes from another run: show and post fixes only on templates by the "
                          "base branch's globs (implied by --pr and workflow_run/pull_request_target events)")
    pub.set_defaults(handler=_github_publish)
    from .history.cli import add_parser as add_history_parser

    add_history_parser(commands)
    return parser


def _report_merge(args: argparse.Namespace) -> int:
    from .errors import LpoError
    from .report import terminal_summary, write_json
    from .shard import merge_reports, troubled_shards

    try:
        merged = merge_reports(args.reports)
    except LpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    write_json(args.output, merged)
    if merged["templates"]:
        print(terminal_summary(merged["templates"]), end="")
    print(f"merged {len(args.reports)} shard reports into {args.output}")
    troubles = troubled_shards(args.reports)
    for trouble in troubles:
        print(f"error: {trouble}", file=sys.stderr)
    summary = merged["summary"]
    return EXIT_FAIL if summary["failed"] else EXIT_ERROR if summary["errors"] or troubles else EXIT_OK


def _github_publish(args: argparse.Namespace) -> int:
    from .errors import LpoError
    from .github.publish import PublishOptions, publish

    try:
        return publish(PublishOptions(
            report=args.report, comment=args.comment, suggestions=args.suggestions, patch_out=args.patch,
            repo=args.repo, pr=args.pr, head_sha=args.head_sha, api_url=args.api_url,
            pytest_exit_code=args.pytest_exit_code, comment_key=args.comment_key, project_dir=args.project_dir,
            prompts=tuple(args.prompts), untrusted_report=args.untrusted_report))
    except LpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def optimize_options(args: argparse.Namespace):
    from .optimize import Budget, OptimizeOptions

    return OptimizeOptions(mode=args.mode, rounds=args.rounds, beam=args.beam, seed=args.seed,
                           optimizer_model=args.optimizer_model,
                           budget=Budget(calls=args.budget_calls, tokens=args.budget_tokens,
                                         usd=args.budget_usd, seconds=args.budget_seconds))


def _optimize(args: argparse.Namespace) -> int:
    """Score the template, then search; the report (if asked) is written whatever happens."""
    from .errors import LpoError
    from .report import build_report, check_output, write_json
    from .runner import Session, failure_text, optimization_text
    from .spec import read_template

    try:
        check_output(args.report, "--report")
        check_output(args.patch, "--patch")
        settings, (path,) = _open_project(args, [args.template], {})
        session = Session(settings, base_ref=args.base, base_option="--base")
        session.expect_calls()
    except LpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    item, template, status = None, None, EXIT_ERROR
    try:
        check_template_path(path)
        template = read_template(settings, path)
        with progress_bar(template.relpath) as bar:
            report = session.run(template, bar)
        print(failure_text(report))
        print("\n".join(session.notes()))
        item = {**report.to_dict(), "optimization": None}
        if report.status != "error":
            result = session.optimize(template, report, optimize_options(args), say=print)
            item["optimization"] = data = result.to_dict()
            print(optimization_text(data))
            if args.patch and result.patch:
                Path(args.patch).write_text(result.patch, encoding="utf-8")
                print(f"patch written to {args.patch} (apply it with: git apply {args.patch})")
            status = EXIT_OK if result.status == "suggested" else EXIT_FAIL
    except Exception as exc:  # noqa: BLE001 - a one-line error, never a traceback
        item = _failed_template(exc, template, path, settings.root)
        status = exit_status(exc)
    if args.report:
        write_json(args.report, build_report([item], base_rev=session.base_rev, root=settings.root,
                                             reference=session.reference(),
                                             extra={"warnings": session.warnings()}))
    return status


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    from .errors import LpoError

    try:
        return run_demo(args.example, Path(args.keep) if args.keep else None,
                        Path(args.cache_dir).resolve() if args.cache_dir else None)
    except LpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with own_warnings_shown_plainly():
        return args.handler(args)


@contextlib.contextmanager
def own_warnings_shown_plainly() -> Iterator[None]:
    """lpo-ci's warnings (a shared cache that cannot be used, a history check that cannot
    run) read "warning: ..." on the command line, not as a Python source location. Only
    while a command runs: a caller in the same process (a test, a script) keeps its own."""
    import warnings

    formatter = warnings.formatwarning

    def plain(message, category, filename, lineno, line=None):
        if category.__module__.split(".")[0] == "lpo_ci":
            return f"warning: {message}\n"
        return formatter(message, category, filename, lineno, line)

    warnings.formatwarning = plain
    try:
        yield
    finally:
        warnings.formatwarning = formatter


if __name__ == "__main__":
    sys.exit(main())
