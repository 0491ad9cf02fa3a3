"""Sharded runs: ``--lpo-shard K/N`` on a CI matrix and ``lpo-ci report merge``.

The end-to-end tests run a real git project against the loopback
OpenAI-compatible server: once unsharded, once as three shards whose reports
are merged, and compare the two reports field by field (timings aside).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lpo_ci.cli import main as cli_main
from lpo_ci.shard import MergeError, Shard, merge_reports, plan, plan_digest
from tests.test_plugin import (  # noqa: F401 - the fixtures apply here too
    BAD, GOOD, _hermetic_env, _preload_heavy_modules, init_repo, project, report, write_template)

TIMINGS = {"created", "seconds", "latency"}


def without_timings(value):
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def differences(left, right, where="report") -> list[str]:
    """Paths at which two JSON values differ (empty when equal)."""
    if isinstance(left, dict) and isinstance(right, dict):
        out = [f"{where}.{k}: only in one" for k in sorted(set(left) ^ set(right))]
        for key in sorted(set(left) & set(right)):
            out += differences(left[key], right[key], f"{where}.{key}")
        return out
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [d for i, (a, b) in enumerate(zip(left, right)) for d in differences(a, b, f"{where}[{i}]")]
    return [] if left == right else [f"{where}: {left!r} != {right!r}"]


# --------------------------------------------------------------------------
# the plan


@pytest.mark.parametrize("text, expected", [("1/1", (1, 1)), ("2/3", (2, 3)), (" 3 / 3 ", (3, 3))])
def test_shard_parses_k_of_n(text, expected):
    shard = Shard.parse(text)
    assert (shard.index, shard.count) == expected


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "3", "a/b", "-1/2", "1/2/3", ""])
def test_shard_rejects_what_is_not_k_of_n(text):
    with pytest.raises(Exception) as info:
        Shard.parse(text)
    assert "--lpo-shard" in str(info.value) and "K/N" in str(info.value)


def test_plan_balances_expected_cost_and_is_deterministic():
    costs = {"a": 100, "b": 100, "c": 50, "d": 50, "e": 200, "f": 10, "g": 40}
    shards = plan(costs, 3)
    assert sorted(p for s in shards for p in s) == sorted(costs)
    loads = sorted(sum(costs[p] for p in s) for s in shards)
    assert loads == [160, 190, 200]  # costliest first to the least loaded: e alone, max load optimal
    assert plan(dict(reversed(list(costs.items()))), 3) == shards  # input order does not matter
    assert plan_digest(costs, 3) == plan_digest(dict(reversed(list(costs.items()))), 3)
    assert plan_digest(costs, 3) != plan_digest({**costs, "a": 101}, 3)
    assert plan(costs, 10)[7:] == [[], [], []]  # more shards than templates: some are empty


def test_base_versions_in_one_git_process_equal_one_by_one(git_repo, tmp_path):
    from lpo_ci import vcs

    files = {"prompts/a.j2": "héllo\n{{ x }}\n", "prompts/b b.j2": "", "prompts/sub/c.j2": "x" * 70000}
    for relpath, text in files.items():
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_text(text, encoding="utf-8")
    rev = git_repo("base")
    paths = [*files, "prompts/new.j2", "prompts/a.j2"]
    assert vcs.show_many(tmp_path, rev, paths) == {p: vcs.show(tmp_path, rev, p) for p in paths}
    assert vcs.show_many(tmp_path, rev, ["prompts/new.j2"]) == {"prompts/new.j2": None}


# --------------------------------------------------------------------------
# end to end: three shards merged equal the unsharded run


def build_project(pytester, url: str) -> None:
    """Seven templates: unchanged, regressed, improved, new, and of unequal sizes.

    No two share a prompt, so which shard scores a template changes no cache hit.
    """
    project(pytester, url)
    write_template(pytester, "prompts/regressed.j2", f"Regressed. {GOOD}", samples=40)
    write_template(pytester, "prompts/unchanged_big.j2", f"Big. {GOOD}", samples=60)
    write_template(pytester, "prompts/unchanged_small.j2", f"Small. {BAD}", samples=10)
    write_template(pytester, "prompts/improved.j2", f"Improved. {BAD}", samples=30)
    write_template(pytester, "prompts/reworded.j2", f"Kept. {GOOD}", samples=20)
    write_template(pytester, "prompts/sub/deep.j2", f"Deep. {BAD}", samples=15)
    init_repo(pytester)
    write_template(pytester, "prompts/regressed.j2", f"Regressed. {BAD}", samples=40)
    write_template(pytester, "prompts/improved.j2", f"Improved. {GOOD}", samples=30)
    write_template(pytester, "prompts/reworded.j2", f"Still kept. {GOOD}", samples=20)
    write_template(pytester, "prompts/new.j2", f"New. {GOOD}", samples=25)


def test_three_shards_merged_equal_the_unsharded_run(pytester, openai_server):
    build_project(pytester, openai_server.url)
    whole = pytester.runpytest("--lpo", "--lpo-report", "whole.json", "--lpo-cache-dir", "cache-whole")
    whole.assert_outcomes(passed=6, failed=1)
    calls_whole = openai_server.requests

    openai_server.reset_counts()
    selected = []
    for k in (1, 2, 3):
        run = pytester.runpytest("--lpo", f"--lpo-shard={k}/3", "--lpo-report", f"shard-{k}.json",
                                 "--lpo-cache-dir", "cache-shards")
        data = report(pytester, f"shard-{k}.json")
        assert data["shard"]["index"] == k and data["shard"]["count"] == 3
        assert sorted(t["template"] for t in data["templates"]) == data["shard"]["templates"]
        selected += data["shard"]["templates"]
        outcomes = run.parseoutcomes()
        assert outcomes.get("deselected", 0) == 7 - len(data["shard"]["templates"])
        run.stdout.fnmatch_lines([f"*shard {k}/3: {len(data['shard']['templates'])} templates*"])
    assert sorted(selected) == sorted(t["template"] for t in report(pytester, "whole.json")["templates"])
    assert openai_server.requests == calls_whole  # no template scored twice, none left out
    # expected cost: samples x 2 when base and head differ -> 80, 60, 60, 40, 25, 15, 10
    costs = sorted(report(pytester, f"shard-{k}.json")["shard"]["cost"] for k in (1, 2, 3))
    assert costs == [95, 95, 100]

    code = cli_main(["report", "merge", *(str(pytester.path / f"shard-{k}.json") for k in (3, 1, 2)),
                     "-o", str(pytester.path / "merged.json")])
    assert code == 1  # the merged verdict: a regression
    merged, unsharded = report(pytester, "merged.json"), report(pytester, "whole.json")
    assert "shard" not in merged
    assert differences(without_timings(merged), without_timings(unsharded)) == []
    # the comparison is not vacuous: verdicts, totals and per-example outcomes are all there
    assert merged["summary"]["failed"] == 1 and merged["summary"]["passed"] == 6
    assert merged["summary"]["usage"]["calls"] == calls_whole
    regressed = next(t for t in merged["templates"] if t["template"] == "prompts/regressed.j2")
    assert regressed["status"] == "fail" and len(regressed["examples"]) == 40
    assert all(e["head"]["outcome"] and e["base"]["outcome"] for e in regressed["examples"])


def test_a_shard_under_xdist_reports_the_same_plan(pytester, openai_server):
    pytest.importorskip("xdist")
    build_project(pytester, openai_server.url)
    single = pytester.runpytest("--lpo", "--lpo-shard=2/3", "--lpo-report", "single.json",
                                "--lpo-cache-dir", "cache-single")
    parallel = pytester.runpytest("-n", "2", "--lpo", "--lpo-shard=2/3", "--lpo-report", "xdist.json",
                                  "--lpo-cache-dir", "cache-xdist")
    assert single.ret == parallel.ret
    a, b = report(pytester, "single.json"), report(pytester, "xdist.json")
    assert a["shard"] == b["shard"] and a["shard"]["templates"]
    assert differences(without_timings(a), without_timings(b)) == []


def test_cli_eval_shards_merge_like_the_plugin(pytester, openai_server, capsys):
    build_project(pytester, openai_server.url)
    templates = sorted(str(p) for p in (pytester.path / "prompts").rglob("*.j2"))
    root = ["--root", str(pytester.path)]
    whole = cli_main(["eval", *templates, *root, "--report", str(pytester.path / "whole.json"),
                      "--cache-dir", str(pytester.path / "c1")])
    for k in (1, 2):
        cli_main(["eval", *templates, *root, "--shard", f"{k}/2", "--cache-dir", str(pytester.path / "c2"),
                  "--report", str(pytester.path / f"s{k}.json")])
    assert "shard 1/2:" in capsys.readouterr().err
    merged = cli_main(["report", "merge", str(pytester.path / "s1.json"), str(pytester.path / "s2.json"),
                       "-o", str(pytester.path / "merged.json")])
    assert whole == merged == 1
    assert differences(without_timings(report(pytester, "merged.json")),
                       without_timings(report(pytester, "whole.json"))) == []


def test_empty_shard_still_writes_its_report(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/only.j2", GOOD, samples=5)
    init_repo(pytester)
    result = pytester.runpytest("--lpo", "--lpo-shard=2/2", "--lpo-report", "s2.json")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    data = report(pytester, "s2.json")
    assert data["templates"] == [] and data["shard"]["templates"] == [] and data["shard"]["base_rev"]
    pytester.runpytest("--lpo", "--lpo-shard=1/2", "--lpo-report", "s1.json").assert_outcomes(passed=1)
    merged = merge_reports([pytester.path / "s1.json", pytester.path / "s2.json"])
    assert [t["template"] for t in merged["templates"]] == ["prompts/only.j2"]


def test_a_shard_with_a_collection_error_makes_the_merge_an_error(pytester, openai_server, capsys):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/good.j2", GOOD, samples=5)
    (pytester.path / "test_broken.py").write_text("def test_x(:\n    pass\n")  # the project's own test
    init_repo(pytester)
    for k in (1, 2):
        result = pytester.runpytest("--lpo", f"--lpo-shard={k}/2", "--lpo-report", f"s{k}.json")
        assert result.ret == pytest.ExitCode.INTERRUPTED  # "1 error during collection"
        assert report(pytester, f"s{k}.json")["shard"]["pytest_exit_status"] == 2
    paths = [str(pytester.path / f"s{k}.json") for k in (1, 2)]
    assert cli_main(["report", "merge", *paths, "-o", str(pytester.path / "merged.json")]) == 3
    err = capsys.readouterr().err
    assert f"{paths[0]}: shard 1/2's pytest run ended with status 2" in err
    assert report(pytester, "merged.json")["summary"]["failed"] == 0  # the verdicts alone would pass


def test_a_broken_template_is_an_error_in_exactly_one_shard(pytester, openai_server):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/good.j2", GOOD, samples=5)
    (pytester.path / "prompts" / "broken.j2").write_text("{# lpo:\n  benchmark: bbh/boolean_expressions\n"
                                                       "  samplez: 5\n#}\nQ: {{ input }}\n")
    init_repo(pytester)
    for k in (1, 2):
        pytester.runpytest("--lpo", f"--lpo-shard={k}/2", "--lpo-report", f"s{k}.json")
    owners = [k for k in (1, 2) if any(t["template"] == "prompts/broken.j2"
                                       for t in report(pytester, f"s{k}.json")["templates"])]
    assert len(owners) == 1
    paths = [str(pytester.path / f"s{k}.json") for k in (1, 2)]
    assert cli_main(["report", "merge", *paths, "-o", str(pytester.path / "merged.json")]) == 3
    merged = report(pytester, "merged.json")
    assert [(t["template"], t["status"]) for t in merged["templates"]] == [
        ("prompts/broken.j2", "error"), ("prompts/good.j2", "pass")]
    assert "unknown key 'samplez'" in merged["templates"][0]["reason"]


@pytest.mark.parametrize("args, message", [
    (["--lpo-shard=4/3"], "shard 4 of 3 does not exist"),
    (["--lpo-shard=half"], "'half' is not K/N"),
    (["--lpo-shard=1/2", "--lpo-update-baseline"], "--lpo-update-baseline cannot be sharded"),
])
def test_bad_shard_option_is_a_usage_error(pytester, openai_server, args, message):
    project(pytester, openai_server.url)
    write_template(pytester, "prompts/a.j2", GOOD, samples=5)
    result = pytester.runpytest("--lpo", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()
    assert openai_server.requests == 0


# --------------------------------------------------------------------------
# merge refuses what would not equal an unsharded run


def shard_report(index: int, count: int, templates: list[str], **shard_fields) -> dict:
    items = [{"template": t, "status": "pass", "reason": "", "usage": {"calls": 1}, "seconds": 0.1,
              "examples": []} for t in templates]
    return {"version": 1, "tool": "lpo-ci 0.1.0", "created": "2025-01-01T00:00:00+00:00",
            "base_rev": "b" * 40 if items else None, "repo_prefix": "", "summary": {}, "templates": items,
            "shard": {"index": index, "count": count, "templates": templates, "cost": 1, "plan": "p1",
                      "base_rev": "b" * 40, "head_rev": "h" * 40, "tool": "lpo-ci 0.1.0", **shard_fields}}


def write_reports(tmp_path: Path, *reports: dict) -> list[Path]:
    paths = []
    for number, data in enumerate(reports, 1):
        path = tmp_path / f"shard-{number}.json"
        path.write_text(json.dumps(data))
        paths.append(path)
    return paths


def test_merge_of_well_formed_shards(tmp_path):
    paths = write_reports(tmp_path, shard_report(2, 2, ["b.j2"]), shard_report(1, 2, ["a.j2", "c.j2"]))
    merged = merge_reports(paths)
    assert [t["template"] for t in merged["templates"]] == ["a.j2", "b.j2", "c.j2"]
    assert merged["summary"]["templates"] == 3 and merged["summary"]["usage"]["calls"] == 3
    assert merged["base_rev"] == "b" * 40


@pytest.mark.parametrize("second, message, blamed", [
    (shard_report(1, 2, ["b.j2"]), "shard 1/2 given twice: also in", 2),
    (shard_report(2, 3, ["b.j2"]), "shard count differs", 2),
    (shard_report(2, 2, ["b.j2"], base_rev="c" * 40), "base commit differs", 2),
    (shard_report(2, 2, ["b.j2"], head_rev="c" * 40), "evaluated commit differs", 2),
    (shard_report(2, 2, ["b.j2"], plan="p2"), "shard plan", 2),
    ({**shard_report(2, 2, ["b.j2"]), "tool": "lpo-ci 0.2.0"}, "lpo-ci version differs", 2),
    (shard_report(2, 2, ["a.j2"]), "template a.j2 is also in", 2),
    ({**shard_report(2, 2, ["b.j2"]), "shard": None}, "not a shard report", 2),
])
def test_merge_names_the_file_that_does_not_fit(tmp_path, second, message, blamed):
    paths = write_reports(tmp_path, shard_report(1, 2, ["a.j2"]), second)
    with pytest.raises(MergeError) as info:
        merge_reports(paths)
    assert message in str(info.value)
    assert info.value.path == str(paths[blamed - 1])


def test_merge_names_the_missing_shard(tmp_path):
    paths = write_reports(tmp_path, shard_report(1, 3, ["a.j2"]), shard_report(3, 3, ["c.j2"]))
    with pytest.raises(MergeError, match=r"missing: 2/3 \(got shard-1.json = 1/3, shard-2.json = 3/3\)"):
        merge_reports(paths)


def test_merge_rejects_an_item_outside_its_shard(tmp_path):
    bad = shard_report(2, 2, ["b.j2"])
    bad["templates"].append({"template": "z.j2", "status": "pass"})
    paths = write_reports(tmp_path, shard_report(1, 2, ["a.j2"]), bad)
    with pytest.raises(MergeError, match="z.j2 was not assigned to shard 2/2"):
        merge_reports(paths)


def test_merge_cli_errors_name_the_file_and_exit_2(tmp_path, capsys):
    good = write_reports(tmp_path, shard_report(1, 2, ["a.j2"]))[0]
    broken = tmp_path / "shard-2.json"
    broken.write_text('{"templates": [')
    assert cli_main(["report", "merge", str(good), str(broken), "-o", str(tmp_path / "out.json")]) == 2
    err = capsys.readouterr().err
    assert f"{broken}:1: not a readable JSON report" in err
    assert cli_main(["report", "merge", str(good), str(tmp_path / "nope.json"), "-o", "x.json"]) == 2
    assert "nope.json: no such report file" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


# --------------------------------------------------------------------------
# the action: shard jobs post nothing, the publish job merges and posts once


@pytest.mark.slow
def test_action_publishes_merged_shard_reports_once(tmp_path, openai_server, data_dir):
    from tests.support.github_server import fake_github
    from tests.support.pr_project import make_regressed_project, pr_files, pull_request_event
    from tests.test_action import run_action

    workspace = tmp_path / "workspace"
    base, head = make_regressed_project(workspace, openai_server.url)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    with fake_github() as gh:
        gh.add_pull(7, head_sha=head, files=pr_files(workspace, base, head))
        event = pull_request_event(7, base, head)
        for k in (1, 2):
            job = run_action(tmp_path, workspace, gh, event, comment="false", suggestions="false",
                             **{"budget-calls": "400", "extra-pytest-args": f"--lpo-shard={k}/2"})
            (artifacts / f"shard-{k}.json").write_bytes(Path(job.outputs["report"]).read_bytes())
        assert not gh.issue_comments.get(7) and not gh.review_comments.get(7)
        shards = [json.loads((artifacts / f"shard-{k}.json").read_text()) for k in (1, 2)]
        assert sorted(len(s["templates"]) for s in shards) == [0, 1]  # one template: one shard is empty

        empty = tmp_path / "publisher"  # the publish job checks out nothing
        empty.mkdir()
        publish = run_action(tmp_path, empty, gh, event,
                             report=f"{artifacts}/shard-*.json")
        assert publish.steps[-1].returncode == 1, publish.log  # the merged verdict: a regression
        assert publish.outputs["regressed"] == "true", publish.log
        assert len(gh.issue_comments[7]) == 1 and len(gh.review_comments[7]) == 1

        (artifacts / "shard-2.json").unlink()  # a shard job that uploaded nothing
        missing = run_action(tmp_path, empty, gh, event,
                             report=f"{artifacts}/shard-*.json\n{artifacts}/shard-2.json")
        assert missing.steps[-1].returncode == 1
        assert "shard-2.json: no such report file" in missing.log
