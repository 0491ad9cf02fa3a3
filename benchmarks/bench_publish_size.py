"""Publishing a report of many templates: time, and the size guarantee.

``lpo-ci github publish`` must post a comment under GitHub's 65,536
characters and a job summary under 1 MiB whatever the number of templates,
in a time that grows no faster than the report. Measured here, for reports
of 100, 1,000 and 10,000 failing templates (each with examples that went
from right to wrong and a suggested fix):

1. reading the report (``load_report``), rendering the comment and the job
   summary: seconds each, bytes of each (checked against the limits: a
   violation exits 1);
2. the ratio of the total time at 10,000 templates to the time at 1,000.
   Target: at most 15 (10 times the templates, linear growth plus noise).

Run from the repository root::

    python benchmarks/bench_publish_size.py
    python benchmarks/bench_publish_size.py --strict   # exit 2 when the ratio misses the target

Exit status: 0 ok; 1 a size limit was broken or a failing verdict was
neither listed nor counted; 2 (with --strict) the ratio is above the target.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lpo_ci.github.comment import COMMENT_LIMIT, marker, render  # noqa: E402
from lpo_ci.github.report_view import load_report  # noqa: E402
from lpo_ci.github.workflow import SUMMARY_BYTES  # noqa: E402

HEAD = "{# lpo:\n  benchmark: bbh/boolean_expressions\n#}\nWork out the following.\n\nQ: {{ input }}\nA:\n"
WINNER = HEAD.replace("Work out the following.", "Evaluate the result of a random Boolean expression.")
TARGET_RATIO = 15.0


def template(i: int) -> dict:
    examples = [{"id": str(n), "target": "True", "head": {"outcome": "wrong", "response": "False " * 20},
                 "base": {"outcome": "correct", "response": "True"}} for n in range(20)]
    return {"template": f"prompts/t{i:05}.j2", "line": 1, "status": "fail", "data": "bbh/boolean_expressions",
            "model": "openai/gpt-4o-mini", "reason": "regression: accuracy dropped 40.0% (tolerance 2.0%), "
                                                    "p = 1.5e-05 < alpha 0.05",
            "head": {"n": 40}, "base_accuracy": 0.95, "head_accuracy": 0.55, "delta": -0.4 - (i % 9) / 100,
            "p_value": 1.5e-05, "usage": {"calls": 80, "cache_hits": 0, "cost": 0.0012},
            "right_to_wrong": [e["id"] for e in examples], "examples": examples,
            "optimization": {"status": "suggested", "reason": "held-out 55% -> 95%", "mode": "local",
                             "dev": {"head": 0.55, "winner": 0.95},
                             "heldout": {"n": 24, "head": 0.55, "winner": 0.95, "p_value": 1e-5},
                             "budget": {"spent": {"calls": 300, "usd": 0.01}},
                             "head_source": HEAD, "winner_source": WINNER}}


def measure(count: int, folder: Path) -> dict:
    path = folder / f"report-{count}.json"
    path.write_text(json.dumps({"tool": "lpo-ci", "templates": [template(i) for i in range(count)]}),
                    encoding="utf-8")
    started = time.perf_counter()
    view = load_report(path)
    loaded = time.perf_counter()
    comment = render(view, limit=COMMENT_LIMIT, marker_text=marker("bench"))
    commented = time.perf_counter()
    summary = render(view, limit=SUMMARY_BYTES, elsewhere="the JSON report")
    done = time.perf_counter()
    problems = []
    for name, text, limit in (("comment", comment, COMMENT_LIMIT), ("summary", summary, SUMMARY_BYTES)):
        size = len(text.encode("utf-8"))
        if size > limit:
            problems.append(f"{name} of {count} templates is {size} bytes, over {limit}")
        listed = len(re.findall(r"^\| ❌ \|", text, re.M))
        more = re.search(r"And ([\d,]+) more failing", text)
        if listed + (int(more.group(1).replace(",", "")) if more else 0) != count:
            problems.append(f"{name} of {count} templates lists {listed} and counts the rest wrongly")
    return {"count": count, "load": loaded - started, "comment": commented - loaded, "summary": done - commented,
            "comment_bytes": len(comment.encode("utf-8")), "summary_bytes": len(summary.encode("utf-8")),
            "total": done - started, "problems": problems}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strict", action="store_true", help="exit 2 when the ratio misses the target")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(count, Path(folder)) for count in (100, 1_000, 10_000)]
    print(f"{'templates':>9}  {'load s':>7}  {'comment s':>9}  {'summary s':>9}  {'comment B':>9}  {'summary B':>9}")
    for r in rows:
        print(f"{r['count']:>9,}  {r['load']:>7.2f}  {r['comment']:>9.2f}  {r['summary']:>9.2f}  "
              f"{r['comment_bytes']:>9,}  {r['summary_bytes']:>9,}")
    ratio = rows[2]["total"] / rows[1]["total"]
    print(f"time at 10,000 / time at 1,000: {ratio:.1f} (target <= {TARGET_RATIO:.0f})")
    problems = [p for r in rows for p in r["problems"]]
    for problem in problems:
        print("PROBLEM:", problem)
    if problems:
        return 1
    return 2 if args.strict and ratio > TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
