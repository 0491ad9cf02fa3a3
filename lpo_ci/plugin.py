"""The pytest plugin: prompt templates as test items.

Off unless ``--lpo`` is given or ``lpo = true`` is set under ``[tool.lpo_ci]``;
when off it collects nothing and imports nothing heavy. Each template is one
item: setup scores it (an untrustworthy evaluation is an *error*), the call
applies the gate (a real regression is a *failure*).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

REPORT_KEY = "lpo_ci"


# The options, in the order --help lists them: (flag, argparse keywords). Every one but a
# switch takes a value; the README's option table is tested against this list.
def _options() -> list[tuple[str, dict]]:
    from .spec import POSITIVE_INT, POSITIVE_NUMBER, SEED

    return [
        ("--lpo", dict(action="store_true", default=None,
                       help="collect prompt templates as test items and score them "
                            "(implied by every other --lpo-* option)")),
        ("--lpo-only", dict(action="store_true", default=None,
                            help="collect only prompt templates (skip the project's other tests)")),
        ("--lpo-prompts", dict(action="append", metavar="GLOB",
                               help="template glob, relative to the project root (repeatable; "
                                    "overrides [tool.lpo_ci] prompts)")),
        ("--lpo-base", dict(metavar="REF", help="git ref of the base version (default: the PR's base in "
                                                "GitHub Actions, else the merge-base with the default branch)")),
        ("--lpo-update-baseline", dict(action="store_true", default=None,
                                       help="write the stored baseline from this run (regressions do not fail)")),
        ("--lpo-report", dict(metavar="FILE", help="write the JSON report to FILE")),
        ("--lpo-model", dict(metavar="MODEL", help="litellm model for templates that name none")),
        ("--lpo-samples", dict(type=POSITIVE_INT, metavar="N",
                               help="examples per template, for templates whose spec sets none")),
        ("--lpo-max-samples", dict(type=POSITIVE_INT, metavar="N",
                                   help="at most N examples per template, whatever its spec says "
                                        "(a quick smoke run)")),
        ("--lpo-seed", dict(type=SEED, metavar="SEED", help="sampling seed")),
        ("--lpo-concurrency", dict(type=POSITIVE_INT, metavar="N", help="concurrent model calls")),
        ("--lpo-batch-size", dict(type=POSITIVE_INT, metavar="N",
                                  help="completion mode: up to N prompts per request to a server that takes "
                                       "a list (vLLM, llama.cpp's server)")),
        ("--lpo-cache-dir", dict(metavar="DIR", help="response cache directory")),
        ("--lpo-data-dir", dict(metavar="DIR", help="local mirror of the benchmark data "
                                                    "(default: $LPO_CI_DATA_DIR, else the hub)")),
        ("--lpo-optimize", dict(action="store_true", default=None,
                                help="after the gate, run a bounded LPO search on each failing template "
                                     "and report the suggested patch")),
        ("--lpo-optimize-mode", dict(choices=["local", "global"], metavar="local|global",
                                     help="local: edit only marked tokens (default); global: all literal text")),
        ("--lpo-budget-calls", dict(type=POSITIVE_INT, metavar="N",
                                    help=f"model calls per optimized template (default {BUDGET_CALLS}; "
                                         f"cached calls are free)")),
        ("--lpo-budget-tokens", dict(type=POSITIVE_INT, metavar="N", help="tokens per optimized template")),
        ("--lpo-budget-usd", dict(type=POSITIVE_NUMBER, metavar="X", help="dollars per optimized template")),
        ("--lpo-budget-seconds", dict(type=POSITIVE_NUMBER, metavar="S", help="seconds per optimized template")),
        ("--lpo-optimizer-model", dict(metavar="MODEL", help="instruction-following model for the optimizer "
                                                             "(default: LLM-free operators)")),
        ("--lpo-history", dict(action="store_true", default=None,
                               help="append this run's results to the history (default: the .lpo-ci/history/ "
                                    "folder)")),
        ("--lpo-history-branch", dict(metavar="BRANCH",
                                      help="keep the history on this git branch: read for trends and drift gates, "
                                           "committed to (not pushed) by --lpo-history")),
        ("--lpo-fresh", dict(action="store_true", default=None,
                             help="ask the model again instead of reading the response cache (new answers are "
                                  "cached); an unchanged template that drops against its last record fails as "
                                  "model drift")),
        ("--lpo-shard", dict(metavar="K/N",
                             help="score only shard K of N (a CI matrix job): templates split by expected cost; "
                                  "join the reports with lpo-ci report merge")),
    ]


BUDGET_CALLS = 300
OPTIMIZE_MODE = "local"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lpo-ci", "prompt template tests (lpo-ci)")
    for flag, keywords in _options():
        group.addoption(flag, **keywords)


def value_options() -> list[str]:
    """The options that take a value (``--lpo-data-dir DIR``)."""
    return [flag for flag, keywords in _options() if keywords.get("action") != "store_true"]


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _option_given(config: pytest.Config) -> bool:
    """Any --lpo-* option: each implies --lpo (``pytest --lpo-only`` means what it says)."""
    return any(config.getoption(_dest(flag)) not in (None, False) for flag, _ in _options())


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser, args) -> None:
    """Stop before pytest runs the wrong project (see ``options.misread_values``)."""
    from .options import misread_values

    problem = misread_values(early_config, value_options())
    if problem:
        raise pytest.UsageError(problem)


def _wants_lpo(config: pytest.Config) -> bool:
    """--lpo (or any --lpo-* option), or ``lpo = true`` in [tool.lpo_ci]; cheap when the table is absent."""
    if _option_given(config):
        return True
    pyproject = Path(str(config.rootpath)) / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # pytest itself says what is wrong with the file
        return False
    if "tool.lpo_ci" not in text:
        return False
    import tomllib

    try:
        from .spec import lpo_table

        table = lpo_table(tomllib.loads(text))
        return isinstance(table, dict) and bool(table.get("lpo", False))
    except tomllib.TOMLDecodeError:
        return False


def _overrides(config: pytest.Config) -> dict:
    def path(name: str) -> str | None:  # typed relative to where pytest was started
        value = config.getoption(name)
        return str(Path(config.invocation_params.dir, value)) if value else None

    return {
        "model": config.getoption("lpo_model"), "samples": config.getoption("lpo_samples"),
        "max_samples": config.getoption("lpo_max_samples"),
        "seed": config.getoption("lpo_seed"), "concurrency": config.getoption("lpo_concurrency"),
        "batch_size": config.getoption("lpo_batch_size"),
        "cache_dir": path("lpo_cache_dir"), "data_dir": path("lpo_data_dir"),
        "prompts": config.getoption("lpo_prompts"),
    }


class LpoPlugin:
    """Registered only when lpo-ci is on; holds the run's settings and results."""

    def __init__(self, config: pytest.Config):
        from .report import check_output
        from .runner import Session
        from .spec import load_settings

        self.config = config
        report = config.getoption("lpo_report")
        check_output(Path(config.invocation_params.dir) / report if report else None, "--lpo-report")
        self.settings = load_settings(Path(str(config.rootpath)), _overrides(config))
        self.session = Session(self.settings, base_ref=config.getoption("lpo_base"))
        self.update_baseline = bool(config.getoption("lpo_update_baseline"))
        self.results: dict[str, dict] = {}
        # real file -> the path it was collected under, so a symbolic link adds no duplicate
        # (pytest may collect a folder again, for a second file argument in it)
        self.collected: dict[Path, Path] = {}
        self._included: set[str] | None = None
        from .history.hook import install

        install(self.session, branch=config.getoption("lpo_history_branch"), fresh=bool(config.getoption("lpo_fresh")))
        self.history_notes: list[str] = []
        self.shard = None
        self.shard_record: dict | None = None  # what this shard scored, for its report
        if config.getoption("lpo_shard"):
            from .errors import SpecError
            from .shard import Shard

            self.shard = Shard.parse(config.getoption("lpo_shard"))
            if self.update_baseline:
                raise SpecError("--lpo-update-baseline cannot be sharded: each shard would write part "
                                "of the baseline", hint="update the baseline in one unsharded run")

    @property
    def is_controller(self) -> bool:
        return not hasattr(self.config, "workerinput")

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config):
        """Skip symbolic links back into their own folder (a loop); with --lpo-only, files
        that are not templates are not even imported."""
        if collection_path.is_symlink() and collection_path.is_dir():
            target = collection_path.resolve()
            if collection_path.parent.resolve().is_relative_to(target):
                return True
        if config.getoption("lpo_only") and collection_path.is_file():
            from .spec import matches

            return None if matches(self.settings, collection_path) and not \
                self.is_shared_partial(collection_path) else True
        return None

    def included(self) -> set[str]:
        """Project paths the templates include, import or extend (read once, on first need)."""
        if self._included is None:
            from .discovery import discover
            from .includes import referenced_files

            sources = {}
            for path in discover(self.settings):
                try:
                    sources[path.relative_to(self.settings.root).as_posix()] = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError, ValueError):
                    continue
            self._included = referenced_files(self.settings.root, sources, self.settings.search_path)
        return self._included

    def is_shared_partial(self, file_path: Path) -> bool:
        """A file without a spec that other templates include: a partial, not a test subject."""
        from .spec import split_spec_comment

        rel = file_path.resolve().relative_to(self.settings.root).as_posix() \
            if file_path.resolve().is_relative_to(self.settings.root) else None
        if rel is None or rel in self.settings.template_tables:
            return False
        try:
            source = file_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return False
        return split_spec_comment(source)[0] is None and rel in self.included()

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector):
        from .spec import matches

        if not matches(self.settings, file_path) or self.is_shared_partial(file_path):
            return None
        real = file_path.resolve()
        if file_path.is_symlink() and real.is_relative_to(self.settings.root):
            return None  # a link to a template of the project: collected under its own name
        if self.collected.setdefault(real, file_path) != file_path:
            return None
        self.session.expect_calls()
        return PromptFile.from_parent(parent, path=file_path)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        """With --lpo-shard, keep this shard's templates (after -k and the like have chosen)."""
        if self.shard is None:
            return
        from .shard import assign

        prompts = [item for item in items if isinstance(item, PromptItem)]
        mine, self.shard_record = assign(self.session, [(item.relpath, item.template) for item in prompts],
                                         self.shard)
        dropped = [item for item in prompts if item.relpath not in mine]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [item for item in items if not (isinstance(item, PromptItem) and item.relpath not in mine)]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """pytest-xdist: the controller learns the shard plan from a worker (each computes the same)."""
        record = getattr(node, "workeroutput", {}).get("lpo_ci_shard")
        if record is not None and self.shard_record is None:
            self.shard_record = record

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if not isinstance(item, PromptItem):
            return report
        from .errors import LpoError

        if call.excinfo is not None and isinstance(call.excinfo.value, LpoError):
            report.longrepr = str(call.excinfo.value) if item.result is None \
                else item.failure_text()
        elif call.excinfo is not None and not isinstance(call.excinfo.value, RegressionFailure) \
                and not item.config.getoption("fulltrace"):
            report.longrepr = internal_error_text(item, call.excinfo.value)
        if call.when == "call" or (call.when == "setup" and call.excinfo is not None):
            data = item.result_dict(call.excinfo.value if call.excinfo else None)
            report.user_properties.append((REPORT_KEY, data))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for key, value in report.user_properties:
            if key == REPORT_KEY and isinstance(value, dict):
                self.results[value["template"]] = value

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if not self.is_controller:
            if self.shard_record is not None:
                self.config.workeroutput["lpo_ci_shard"] = self.shard_record  # type: ignore[attr-defined]  # xdist
            return
        from .report import build_report, write_json

        items = list(self.results.values())
        if self.update_baseline:
            baseline = self.session.baseline
            for item in items:
                if item["status"] != "error" and item.get("fingerprint"):
                    outcomes = {e["id"]: e["head"]["outcome"] for e in item["examples"]}
                    baseline.record(item["template"], item["fingerprint"],
                                    {"accuracy": (item["head"] or {}).get("accuracy"),
                                     "n": len(outcomes), "model": item["model"], "benchmark": item["data"]},
                                    outcomes)
                    old = item.get("renamed_from")
                    if old and old != item["template"] and not (self.settings.root / old).exists():
                        baseline.forget(old)
            baseline.save()
        path = self.config.getoption("lpo_report")
        if path:
            shard = None
            if self.shard:
                from .shard import assign

                record = self.shard_record or assign(self.session, [], self.shard)[1]  # none collected
                # the merge job cannot see this job's status: a collection error must reach it
                shard = {"shard": {**record, "pytest_exit_status": int(exitstatus)}}
            write_json(Path(self.config.invocation_params.dir) / path,
                       build_report(items, base_rev=self.session.base_rev if items else None,
                                    root=self.settings.root,
                                    reference=self.session.reference() if items else None,
                                    extra={"warnings": self.session.warnings(), **(shard or {})}))
        if self.config.getoption("lpo_history"):
            from .history.hook import record_items

            self.history_notes = record_items(items, self.session, self.config.getoption("lpo_history_branch"))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.is_controller or not self.results:
            return
        from .report import capped_note, terminal_summary

        notes = self.session.notes() + self.history_notes
        if self.update_baseline and self.settings.baseline:
            notes.append(f"baseline written to {self.settings.baseline}")
        if self.settings.max_samples is not None:
            notes += filter(None, [capped_note(list(self.results.values()), self.settings.max_samples,
                                               "--lpo-max-samples")])
        if self.shard_record is not None:
            from .shard import shard_note

            notes.append(shard_note(self.shard_record))
        terminalreporter.write_sep("=", "lpo-ci summary")
        terminalreporter.write_line(terminal_summary(list(self.results.values()), notes).rstrip("\n"))


def pytest_configure(config: pytest.Config) -> None:
    if not _wants_lpo(config):
        return
    from .errors import LpoError

    try:
        plugin = LpoPlugin(config)
    except LpoError as exc:
        report = config.getoption("lpo_report")
        if report and not (Path(config.invocation_params.dir) / report).is_dir():  # always written:
            # the publisher reads why nothing ran
            from .report import build_report, write_json

            write_json(Path(config.invocation_params.dir) / report, build_report([], extra={"error": str(exc)}))
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(plugin, "lpo-ci-session")
    _add_prompt_dirs_to_testpaths(config, plugin.settings)


def _add_prompt_dirs_to_testpaths(config: pytest.Config, settings) -> None:
    """With ``testpaths`` (e.g. ``tests``) pytest would never visit the prompt folders: add
    the folders holding templates that no test path covers."""
    if config.args_source is not pytest.Config.ArgsSource.TESTPATHS:
        return
    from .discovery import template_folders

    covered = [Path(config.invocation_params.dir, arg).resolve() for arg in config.args]
    for folder in template_folders(settings):
        if not any(folder == c or c in folder.parents for c in covered):
            config.args.append(str(folder))


class RegressionFailure(Exception):
    """Raised by an item whose gate failed; shown as the gate's failure text."""


def internal_error_text(item: "PromptItem", error: BaseException) -> str:
    """A failure that is no user error: one line, not a traceback."""
    from .errors import internal_error

    return (f"{item.relpath}:{item.line}: {internal_error(error)}\n"
            f"  hint: rerun with --full-trace for the traceback, and please report it")


class PromptFile(pytest.File):
    """A prompt template file; yields one item scored on its benchmark or dataset.

    A broken spec or template is not a collection error (which would stop the whole
    session): it becomes an item that errors, so the other templates still run and
    the report lists it.
    """

    def collect(self):
        from .render import compile_template
        from .runner import data_label
        from .spec import read_template

        plugin: LpoPlugin = self.config.pluginmanager.get_plugin("lpo-ci-session")
        template = None
        try:
            template = read_template(plugin.settings, self.path)
            compile_template(template.source, template.relpath)
        except Exception as exc:  # noqa: BLE001 - one broken template never interrupts the run
            name = data_label(template.spec) if template is not None else "invalid-spec"
            yield PromptItem.from_parent(self, name=name, template=template, error=exc)
            return
        yield PromptItem.from_parent(self, name=data_label(template.spec), template=template)

    def repr_failure(self, excinfo):
        from .errors import LpoError

        if isinstance(excinfo.value, LpoError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class PromptItem(pytest.Item):
    def __init__(self, *, template, error=None, **kwargs):
        super().__init__(**kwargs)
        self.template = template  # None when the spec could not be read (``error`` says why)
        self.error = error  # found while collecting: raised at setup, so the item errors
        self.result = None  # the runner's ItemReport once scored
        self.optimization = None  # the LPO result (a dict) when --lpo-optimize ran

    @property
    def plugin(self) -> LpoPlugin:
        return cast("LpoPlugin", self.config.pluginmanager.get_plugin("lpo-ci-session"))

    @property
    def relpath(self) -> str:
        if self.template is not None:
            return self.template.relpath
        try:
            return self.path.resolve().relative_to(self.plugin.settings.root).as_posix()
        except ValueError:
            return self.path.as_posix()

    @property
    def line(self) -> int:
        """The line in the template file (an error located in pyproject.toml says so itself)."""
        if self.template is not None:
            return self.template.spec_line
        from .runner import line_in

        return line_in(self.error, self.relpath)

    def setup(self) -> None:
        from .progress import item_progress
        from .runner import raise_for_error

        if self.error is not None:
            raise self.error
        with item_progress(self.config) as progress:
            self.result = self.plugin.session.run(self.template, progress)
        raise_for_error(self.result)

    def runtest(self) -> None:
        if self.result.status == "fail" and not self.plugin.update_baseline:
            if self.config.getoption("lpo_optimize"):
                self.optimize()
            raise RegressionFailure(self.failure_text())

    def optimize(self) -> None:
        from .optimize import Budget, OptimizeOptions

        option = self.config.getoption
        options = OptimizeOptions(
            mode=option("lpo_optimize_mode") or OPTIMIZE_MODE, optimizer_model=option("lpo_optimizer_model"),
            seed=self.template.spec.seed,
            budget=Budget(calls=option("lpo_budget_calls") or BUDGET_CALLS, tokens=option("lpo_budget_tokens"),
                          usd=option("lpo_budget_usd"), seconds=option("lpo_budget_seconds")))
        from .progress import item_progress

        with item_progress(self.config, f"LPO search, budget {options.budget.describe()}"):
            self.optimization = self.plugin.session.optimize(self.template, self.result, options).to_dict()

    def failure_text(self) -> str:
        from .runner import failure_text, optimization_text

        text = failure_text(self.result)
        if self.optimization is not None:
            text += "\n" + optimization_text(self.optimization)
        return text

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, RegressionFailure):
            return str(excinfo.value)
        from .errors import LpoError

        if isinstance(excinfo.value, LpoError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        # Section titles show the domain; one that is not a suffix of the node id
        # keeps -v from turning the dots of file names into '::'.
        return self.path, self.line - 1, f"[lpo] {self.relpath}::{self.name}"

    def result_dict(self, error: BaseException | None) -> dict:
        """This item's entry in the JSON report (also for items that could not be scored)."""
        from .errors import LpoError
        from .runner import error_entry

        if self.result is not None:
            data = self.result.to_dict()
        else:
            reason = "not scored"
            if isinstance(error, LpoError):
                reason = str(error)
            elif error is not None:
                reason = internal_error_text(self, error)
            data = error_entry(self.relpath, self.line, None if self.template is None else self.name,
                               self.template.spec.model if self.template is not None else None, reason)
        if self.plugin.update_baseline and data["status"] == "fail":
            data["status"] = "pass"  # recording a new baseline accepts the change
            data["reason"] += "; accepted: the baseline is being updated"
        data["optimization"] = self.optimization
        data["nodeid"] = self.nodeid
        return data
