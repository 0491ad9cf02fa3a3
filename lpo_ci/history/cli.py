"""``lpo-ci history record|show|html``: keep and read the history from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import EXIT_OK, EXIT_USAGE, LpoError
from .record import EVENTS
from .show import DEFAULT_LAST, FORMATS

CONFIGURED = ""  # --branch without a name: [tool.lpo_ci] history_branch (default lpo-ci-history)


def _store_options(parser: argparse.ArgumentParser, *, reading: bool) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--branch", nargs="?", const=CONFIGURED, metavar="NAME",
                       help="the history on a git branch (default name: [tool.lpo_ci] history_branch, "
                            "else lpo-ci-history)")
    where.add_argument("--dir", metavar="DIR", help="the history in this folder (default: [tool.lpo_ci] "
                                                    "history_dir, else .lpo-ci/history)")
    parser.add_argument("--remote", default="origin", help="git remote of the history branch (default origin)")
    if reading:
        parser.add_argument("--fetch", action="store_true", help="fetch the history branch from the remote first")
    parser.add_argument("--root", help="project root (default: nearest folder with pyproject.toml)")


def _selection_options(parser: argparse.ArgumentParser, last: int | None) -> None:
    parser.add_argument("templates", nargs="*", metavar="TEMPLATE",
                        help="template paths (current or former); default: every template in the history")
    parser.add_argument("--last", type=_positive, default=last, metavar="N",
                        help=f"the last N records per template (default: {last or 'all'})")
    parser.add_argument("--since", metavar="DATE", help="only records made on or after DATE (2026-01-31)")
    parser.add_argument("--ref", help="only records of this branch or ref (main, refs/heads/main)")


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def add_parser(commands) -> None:
    """The ``history`` command and its subcommands, under the main parser's ``commands``."""
    history = commands.add_parser("history", help="prompt quality over time: record runs, show trends",
                                  description="Exit status: 0 done, 2 bad input.")
    sub = history.add_subparsers(dest="history_command", required=True)
    record = sub.add_parser("record", help="append a report's results to the history",
                            description="One record per evaluated template. A push that is refused is a "
                                        "warning (exit status 0): the records stay on the local branch and "
                                        "go with the next push.")
    record.add_argument("--report", required=True, help="the JSON report (--lpo-report or lpo-ci eval --report)")
    record.add_argument("--push", action="store_true", help="push the history branch (with --branch)")
    record.add_argument("--event", choices=EVENTS, help="what started the run (default: from GITHUB_EVENT_NAME, "
                                                        "else manual)")
    _store_options(record, reading=False)
    record.set_defaults(handler=_record)
    fetch = sub.add_parser("fetch", help="fetch the history branch from the remote (for show, html and the gates)",
                           description="A branch that does not exist yet is not an error; a remote that cannot "
                                       "be read is a warning. Exit status: 0, or 2 for bad input.")
    fetch.add_argument("--branch", default=CONFIGURED, metavar="NAME",
                       help="the history branch (default: [tool.lpo_ci] history_branch, else lpo-ci-history)")
    fetch.add_argument("--remote", default="origin", help="git remote (default origin)")
    fetch.add_argument("--root", help="project root (default: nearest folder with pyproject.toml)")
    fetch.set_defaults(handler=_fetch, dir=None)
    show = sub.add_parser("show", help="a table with a sparkline per template",
                          description="Marks: T template text changed, M model changed, D data, scorer or spec "
                                      "changed (not comparable: a gap in the sparkline).")
    _selection_options(show, DEFAULT_LAST)
    show.add_argument("--format", choices=FORMATS, default="table", help="table (default), json or csv")
    _store_options(show, reading=True)
    show.set_defaults(handler=_show)
    html = sub.add_parser("html", help="write a self-contained HTML dashboard (works offline)")
    html.add_argument("out", metavar="OUT.html", help="the file to write")
    _selection_options(html, None)
    html.add_argument("--title", default="Prompt quality over time", help="the page title")
    _store_options(html, reading=True)
    html.set_defaults(handler=_html)


def _open(args: argparse.Namespace, push: bool = False):
    from ..cli import _project_root
    from ..spec import load_settings
    from .hook import open_store
    from .gitstore import GitBranchStore

    root = Path(args.root).resolve() if args.root else _project_root(Path.cwd())
    settings = load_settings(root)
    if args.dir:
        from .store import LocalStore

        return settings, LocalStore(Path(args.dir).resolve())
    branch = None if args.branch is None else (args.branch or settings.history_branch)
    store = open_store(settings, branch, remote=args.remote, push=push)
    if getattr(args, "fetch", False) and isinstance(store, GitBranchStore):
        _warn(store.fetch())
    return settings, store


def _warn(messages) -> None:
    from ..github import workflow

    for message in ([messages] if isinstance(messages, str) else messages or []):
        workflow.annotate("warning", message, title="lpo-ci: history")


def _series(args: argparse.Namespace):
    from . import series as ser
    from .store import collect_warnings

    settings, store = _open(args)
    shards = store.shards()
    every = ser.build(shards)
    wanted = [_template_path(settings.root, t) for t in args.templates]
    chosen = ser.select(every, wanted)
    missing = [t for t, w in zip(args.templates, wanted) if not ser.select(every, [w])]
    if missing:
        raise LpoError(f"no history for {', '.join(missing)} in {store.description}",
                       hint="list what is recorded with: lpo-ci history show")
    return chosen, lambda: collect_warnings(shards.values())


def _template_path(root: Path, given: str) -> str:
    """A template named on the command line, as the history knows it (relative to the project)."""
    path = Path(given)
    if path.is_absolute() or path.exists():
        try:
            return path.resolve().relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def _record(args: argparse.Namespace) -> int:
    from .hook import record_report

    try:
        if args.push and args.branch is None:
            raise LpoError("--push needs --branch", hint="lpo-ci history record --report FILE --branch --push")
        settings, store = _open(args, push=args.push)
        try:
            report = json.loads(Path(args.report).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise LpoError(f"cannot read the report: {exc}", path=args.report) from None
        except json.JSONDecodeError as exc:
            raise LpoError(f"not JSON: {exc.msg}", path=args.report, line=exc.lineno,
                           hint="pass the file written by --lpo-report") from None
        done = record_report(report, settings.root, store, event=args.event, file=args.report)
    except LpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for text in done.skipped:
        print(text, file=sys.stderr)
    _warn(done.warnings)
    print(f"lpo-ci: {len(done.records)} history record{'s' * (len(done.records) != 1)} appended to "
          f"{store.description}")
    return EXIT_OK


def _fetch(args: argparse.Namespace) -> int:
    try:
        _, store = _open(args)
        problem = store.fetch()
    except LpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if problem:
        _warn(problem)
    elif not store.exists():
        print(f"lpo-ci: no history branch '{store.branch}' yet: the first recorded run creates it")
    else:
        print(f"lpo-ci: history branch '{store.branch}' fetched from {store.remote}")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    from .show import render

    try:
        chosen, problems = _series(args)
        text = render(chosen, args.format, args.last, args.since, args.ref)
    except LpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(text)
    _warn(problems())
    return EXIT_OK


def _html(args: argparse.Namespace) -> int:
    from .html import write_dashboard

    try:
        chosen, problems = _series(args)
        out = write_dashboard(Path(args.out), chosen, title=args.title, last=args.last, since=args.since,
                              ref=args.ref)
    except LpoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _warn(problems())
    print(f"lpo-ci: dashboard written to {out}")
    return EXIT_OK
