"""History records, the local store, series across renames, and ``lpo-ci history show``.

Records are made by the real record builder from report items; the store is
a real folder; corrupt and foreign lines are written as a hostile or unlucky
user would leave them.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
from pathlib import Path

import pytest

from lpo_ci.cli import main
from lpo_ci.history import record as rec
from lpo_ci.history import series as ser
from lpo_ci.history.show import render
from lpo_ci.history.sparkline import BLOCKS, sparkline
from lpo_ci.history.store import LocalStore
from tests.support.history_data import commit_id, context, item, make_record


def store_with(tmp_path: Path, records: list[dict]) -> LocalStore:
    store = LocalStore(tmp_path / "history")
    store.append(records)
    return store


def every_series(store: LocalStore) -> dict[str, ser.Series]:
    return ser.build(store.shards())


# --- the record -----------------------------------------------------------------


def test_a_record_keeps_the_outcomes_packed_in_sample_order():
    r = make_record("prompts/x.j2", "cwfec", 3, ids=["17", "3", "250", "9", "4"])
    assert r["ids"] == "17 3 250 9 4" and r["outcomes"] == "cwfec"
    assert rec.outcomes(r) == {"17": "c", "3": "w", "250": "f", "9": "e", "4": "c"}
    assert (r["n"], r["correct"], r["format_failures"], r["errors"]) == (5, 2, 1, 1)
    assert r["accuracy"] == pytest.approx(0.5)  # errors are not counted as wrong answers
    assert r["commit"] == commit_id(3) and r["event"] == "push" and r["reported_models"] == {"fake-2026-01": 5}
    line = rec.dumps(r)
    assert "\n" not in line and line.index('"ids"') > line.index('"accuracy"')  # the bulky part last
    assert rec.loads(line).items() >= r.items()


def test_ids_with_spaces_are_kept_as_a_list():
    r = make_record("prompts/x.j2", "cw", 0, ids=["case one", "case two"])
    assert r["ids"] == ["case one", "case two"]
    assert rec.outcomes(rec.loads(rec.dumps(r))) == {"case one": "c", "case two": "w"}


def test_items_that_were_not_evaluated_make_no_record():
    assert rec.build(item("prompts/x.j2", "cc", status="error"), context(0), template_sha="a") is None
    assert rec.build({**item("prompts/x.j2", "cc"), "head": None}, context(0), template_sha="a") is None


def test_scorer_fields_of_the_report_are_recorded():
    r = make_record("prompts/x.j2", "cw", 0, scorer="bbh", scorer_version="2")
    assert (r["scorer"], r["scorer_version"]) == ("bbh", "2")


@pytest.mark.parametrize("change, problem", [
    (lambda r: r.pop("fingerprint"), "'fingerprint' must be a non-empty string"),
    (lambda r: r.update(template="../outside.j2"), "relative path inside the repository"),
    (lambda r: r.update(accuracy=1.5), "'accuracy' must be a number between 0 and 1"),
    (lambda r: r.update(outcomes="cx"), "'outcomes' must be a string of c, w, f and e"),
    (lambda r: r.update(outcomes="c"), "'ids' and 'outcomes' differ in length"),
    (lambda r: r.update(commit="not hex"), "'commit' must be a hexadecimal commit id"),
    (lambda r: r.pop("format"), "no record format number"),
    (lambda r: r.update(reported_models="gpt"), "'reported_models' must map names to counts"),
    (lambda r: r.update(subject=["<b>"]), "'subject' must be a string"),
    (lambda r: r.update(tokens="many"), "'tokens' must be a number"),
    (lambda r: r.update(renamed_from="/etc/passwd"), "'renamed_from' must be a relative path"),
    (lambda r: r.update(dirty="yes"), "'dirty' must be true or false"),
])
def test_malformed_records_are_refused_with_the_reason(change, problem):
    r = make_record("prompts/x.j2", "cw", 0)
    change(r)
    with pytest.raises(rec.RecordError, match=problem.replace("(", r"\(")):
        rec.check(json.loads(rec.dumps(r)))


def test_a_newer_format_is_refused_and_an_older_shape_is_read():
    newer = {**make_record("prompts/x.j2", "cw", 0), "format": rec.FORMAT + 1}
    with pytest.raises(rec.NewerFormat, match="newer lpo-ci"):
        rec.check(newer)
    # what an older writer left out: no provider ids, no outcomes, no event, no cost
    older = {"format": 1, "template": "prompts/x.j2", "template_sha": "ab", "fingerprint": "f", "n": 2,
             "run_date": "2025-12-01T00:00:00Z", "commit": "abcdef12", "accuracy": 0.5}
    read = rec.check(older)
    assert read["reported_models"] == {} and read["outcomes"] is None and read["event"] == "manual"
    assert rec.outcomes(read) == {}


# --- the local store ---------------------------------------------------------------


def test_corrupt_lines_are_skipped_with_a_warning_naming_file_and_line(tmp_path):
    store = store_with(tmp_path, [make_record("prompts/x.j2", "cc", 0)])
    path = tmp_path / "history" / "prompts" / "x.j2" / "2026-01.jsonl"
    with path.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
        handle.write(json.dumps({**make_record("prompts/x.j2", "cc", 1), "format": 99}) + "\n")
        handle.write(json.dumps({**make_record("prompts/x.j2", "cc", 2), "format": 99}) + "\n")
        handle.write(rec.dumps(make_record("prompts/x.j2", "cw", 3))[:40])  # an interrupted writer
    store.append([make_record("prompts/x.j2", "ww", 4)])  # starts on a line of its own

    shards = store.shards()
    records = shards["prompts/x.j2"].records()
    assert [r["outcomes"] for r in records] == ["cc", "ww"]
    warnings = shards["prompts/x.j2"].warnings()
    assert any(w.startswith(f"{path}:2: not a history record: not JSON") for w in warnings), warnings
    assert any(f"{path}:3: not a history record: written in record format 99 by a newer lpo-ci" in w
               and "(and 1 more lines like it)" in w and "upgrade lpo-ci" in w for w in warnings), warnings
    assert any(w.startswith(f"{path}:5: ") for w in warnings), warnings


def test_the_cli_prints_corrupt_line_warnings_and_shows_the_rest(tmp_path, capsys):
    store = store_with(tmp_path, [make_record("prompts/x.j2", "cc", 0), make_record("prompts/x.j2", "cw", 1)])
    path = tmp_path / "history" / "prompts" / "x.j2" / "2026-01.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text(lines[0] + "\n" + "garbage\n" + lines[1] + "\n", encoding="utf-8")
    assert main(["history", "show", "--dir", str(store.directory), "--root", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "prompts/x.j2" in out and "100.0%" in out and "50.0%" in out
    assert f"{path}:2: not a history record" in err


def _append_many(directory: str, worker: int) -> None:
    store = LocalStore(Path(directory))
    for index in range(40):
        store.append([make_record("prompts/x.j2", "cw" * 50, worker * 1000 + index)])


def test_concurrent_appends_to_one_folder_lose_nothing(tmp_path):
    directory = tmp_path / "history"
    workers = [multiprocessing.get_context("spawn").Process(target=_append_many, args=(str(directory), w))
               for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    shard = LocalStore(directory).shards()["prompts/x.j2"]
    assert len(shard.records()) == 120 and not shard.problems


def test_history_paths_cannot_leave_the_store(tmp_path):
    from lpo_ci.history.store import HistoryError

    store = LocalStore(tmp_path / "history")
    bad = make_record("prompts/x.j2", "c", 0)
    bad["template"] = "../../etc/passwd"
    with pytest.raises(HistoryError, match="not a path a history file may have"):
        store.append([bad])
    assert not (tmp_path / "etc").exists()


# --- series and renames ---------------------------------------------------------


def test_a_renamed_template_keeps_its_history(tmp_path):
    store = store_with(tmp_path, [
        make_record("prompts/a.j2", "cccc", 0), make_record("prompts/a.j2", "cccw", 1),
        make_record("prompts/b.j2", "ccww", 2, renamed_from="prompts/a.j2"),
        make_record("prompts/b.j2", "cwww", 3)])
    series = every_series(store)
    assert list(series) == ["prompts/b.j2"]  # a.j2 lives on as b.j2
    b = series["prompts/b.j2"]
    assert b.paths == ["prompts/b.j2", "prompts/a.j2"]
    assert [r["outcomes"] for r in b.records()] == ["cccc", "cccw", "ccww", "cwww"]
    assert [r["outcomes"] for r in b.tail(3)] == ["cccw", "ccww", "cwww"]
    assert ser.select(series, ["prompts/a.j2"]) == [b]  # asked by its former name


def test_a_path_created_again_after_a_rename_has_a_series_of_its_own(tmp_path):
    store = store_with(tmp_path, [
        make_record("prompts/a.j2", "cccc", 0),
        make_record("prompts/b.j2", "cccw", 1, renamed_from="prompts/a.j2"),
        make_record("prompts/a.j2", "wwww", 2, text="a new file")])
    series = every_series(store)
    assert [r["outcomes"] for r in series["prompts/b.j2"].records()] == ["cccc", "cccw"]
    assert [r["outcomes"] for r in series["prompts/a.j2"].records()] == ["wwww"]


def test_a_rename_loop_in_hand_edited_data_ends(tmp_path):
    store = store_with(tmp_path, [
        make_record("prompts/a.j2", "cc", 0, renamed_from="prompts/b.j2"),
        make_record("prompts/b.j2", "cw", 1, renamed_from="prompts/a.j2")])
    assert every_series(store)  # terminates


# --- show -------------------------------------------------------------------------


def test_sparkline_scales_and_breaks():
    assert sparkline([0.5, 1.0]) == BLOCKS[0] + BLOCKS[-1]
    assert sparkline([0.80, 0.81]) not in (BLOCKS[0] + BLOCKS[-1],)  # a 1-point move is not a cliff
    assert sparkline([0.5, 0.6, 0.9], breaks={2}) == BLOCKS[0] + BLOCKS[2] + " " + BLOCKS[-1]


def test_show_marks_template_model_and_data_changes_and_never_joins_other_fingerprints(tmp_path):
    store = store_with(tmp_path, [
        make_record("prompts/x.j2", "cccc", 0),
        make_record("prompts/x.j2", "cccw", 1, text="v2"),
        make_record("prompts/x.j2", "ccww", 2, text="v2", model="openai/other"),
        make_record("prompts/x.j2", "cwww", 3, text="v2", model="openai/other", fingerprint="fp-new"),
        make_record("prompts/x.j2", "cccw", 4, text="v2", model="openai/other", fingerprint="fp-new",
                    reported={"other-2026-02": 4})])
    text = render(list(every_series(store).values()))
    lines = text.splitlines()
    assert lines[0].startswith("prompts/x.j2  ")
    spark = lines[0].split("  ")[1]
    assert len(spark) == 6 and spark[3] == " "  # a gap before the record with a new fingerprint
    rows = [line.split() for line in lines[2:7]]
    assert [row[0] for row in rows] == [rec.short(commit_id(i)) for i in range(5)]
    assert [row[-1] if row[-1] in ("T", "M", "D") else "" for row in rows] == ["", "T", "M", "D", "M"]
    assert "100.0%" in lines[2] and "[51.0%, 100.0%]" in lines[2]
    assert "openai/other (other-2026-02)" in lines[6]
    assert "T template text changed" in text and "M model changed" in text


def test_show_last_since_and_ref_filters(tmp_path):
    store = store_with(tmp_path, [make_record("prompts/x.j2", "c" * (i + 1), i) for i in range(30)]
                       + [make_record("prompts/x.j2", "w", 30, ctx=context(30, ref="refs/heads/topic"))])
    series = list(every_series(store).values())
    rows = json.loads(render(series, "json"))["templates"][0]["records"]
    assert len(rows) == 20 and rows[-1]["ref"] == "refs/heads/topic"
    assert [r["n"] for r in json.loads(render(series, "json", last=3, ref="main"))["templates"][0]["records"]] \
        == [28, 29, 30]
    since = json.loads(render(series, "json", last=None, since="2026-01-02"))["templates"][0]["records"]
    assert [r["n"] for r in since][:2] == [25, 26] and len(since) == 7
    table = list(csv.DictReader(io.StringIO(render(series, "csv", last=2))))
    assert [row["n"] for row in table] == ["30", "1"] and table[0]["reported_models"] == "fake-2026-01"


def test_show_bad_inputs(tmp_path, capsys):
    store = store_with(tmp_path, [make_record("prompts/x.j2", "cc", 0)])
    base = ["history", "show", "--dir", str(store.directory), "--root", str(tmp_path)]
    assert main(base + ["--since", "yesterday"]) == 2
    assert "--since 'yesterday' is not a date" in capsys.readouterr().err
    assert main(base + ["prompts/none.j2"]) == 2
    assert "no history for prompts/none.j2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--last", "0"])
    assert main(["history", "show", "--dir", str(tmp_path / "empty"), "--root", str(tmp_path)]) == 0
    assert "no history records match" in capsys.readouterr().out


def test_unwritable_places_are_clear_errors(tmp_path, capsys):
    blocker = tmp_path / "history"
    blocker.write_text("a file, not a folder", encoding="utf-8")
    from lpo_ci.history.store import HistoryError

    with pytest.raises(HistoryError, match="cannot write the history") as caught:
        LocalStore(blocker).append([make_record("prompts/x.j2", "c", 0)])
    assert "hint: check the folder" in str(caught.value)
    store = store_with(tmp_path / "ok", [make_record("prompts/x.j2", "c", 0)])
    out = blocker / "dashboard.html"
    assert main(["history", "html", str(out), "--dir", str(store.directory), "--root", str(tmp_path)]) == 2
    assert "cannot write the dashboard" in capsys.readouterr().err
