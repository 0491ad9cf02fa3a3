"""History records generated through the real record builder, for tests of the views and gates
and for the history benchmark.

``item`` makes a report item as the runner writes it (with per-example
outcomes), ``make_record`` turns it into a record with ``lpo_ci.history.record.build``,
and ``synthetic_history`` writes many commits' worth for many templates: a
random walk of per-example outcomes, occasional template edits, a model swap
and a change of data part way.
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lpo_ci.history import record as rec
from lpo_ci.history.store import LocalStore, append_lines, group_lines

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
NAMES = {"c": "correct", "w": "wrong", "f": "format_failure", "e": "error"}


def item(template: str, outcomes: str, *, ids: list[str] | None = None, fingerprint: str = "fp0000000000aaaa",
         model: str = "openai/fake", reported: dict | None = None, status: str = "pass", **extra) -> dict:
    """A report item with ``outcomes`` as one code per example (c, w, f, e)."""
    ids = ids or [str(i) for i in range(len(outcomes))]
    correct = outcomes.count("c")
    scored = len(outcomes) - outcomes.count("e")
    accuracy = correct / scored if scored else None
    from lpo_ci.stats import wilson_interval

    return {
        "template": template, "status": status, "fingerprint": fingerprint, "data": "bbh/boolean_expressions",
        "model": model, **extra,
        "head": {"n": len(outcomes), "accuracy": accuracy, "interval": list(wilson_interval(correct, scored)),
                 "correct": correct, "format_failures": outcomes.count("f"), "errors": outcomes.count("e"),
                 "usage": {"tokens": 20 * len(outcomes), "cost": 0.0001 * len(outcomes)}, "seconds": 1.5,
                 "reported_models": reported if reported is not None else {"fake-2026-01": len(outcomes)},
                 "system_fingerprints": {"fp_a": len(outcomes)}},
        "examples": [{"id": i, "head": {"outcome": NAMES[o]}} for i, o in zip(ids, outcomes)],
    }


def commit_id(index: int) -> str:
    """A commit id for the index-th commit, shaped like git's."""
    return hashlib.sha1(f"commit {index}".encode()).hexdigest()


def context(index: int, *, commit: str | None = None, ref: str = "refs/heads/main", event: str = "push",
            subject: str | None = None, hours_apart: float = 1) -> dict:
    when = START + timedelta(hours=index * hours_apart)
    return {"run": f"run{index}", "tool": "lpo-ci 0.1.0", "repo_prefix": "",
            "commit": commit or commit_id(index), "parent": commit_id(index - 1) if index else None,
            "commit_date": when.isoformat(timespec="seconds"), "subject": subject or f"Change number {index}",
            "run_date": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "ref": ref, "event": event}


def make_record(template: str, outcomes: str, index: int, *, text: str = "v1", renamed_from: str | None = None,
                ctx: dict | None = None, **item_options) -> dict:
    return rec.build(item(template, outcomes, **item_options), ctx or context(index),
                     template_sha=rec.text_sha(text), renamed_from=renamed_from)


def walk(rng: random.Random, outcomes: list[str], flips: int) -> list[str]:
    """The outcomes after ``flips`` random examples changed (a small move of the accuracy)."""
    changed = list(outcomes)
    for _ in range(flips):
        index = rng.randrange(len(changed))
        changed[index] = "w" if changed[index] == "c" else "c"
    return changed


def synthetic_history(directory: Path, *, templates: int = 50, commits: int = 2000, n: int = 50,
                      seed: int = 0, commit_ids: list[str] | None = None, hours_apart: float = 1) -> LocalStore:
    """A local store of ``templates`` x ``commits`` records, ``hours_apart`` (written in one go per
    file); the records name ``commit_ids`` (oldest first) when given, else made-up ids."""
    rng = random.Random(seed)
    store = LocalStore(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for t in range(templates):
        name = f"prompts/task_{t:02d}.j2"
        outcomes = ["c" if rng.random() < 0.8 else "w" for _ in range(n)]
        version, model, fingerprint = 1, "openai/gpt-4o-mini", "fp%014x" % t
        ids = [str(rng.randrange(10_000)) for _ in range(n)]
        records = []
        for index in range(commits):
            if rng.random() < 0.05:
                version += 1
                outcomes = walk(rng, outcomes, rng.randint(1, 4))
            if index == commits // 2:
                model = "openai/gpt-4.1-mini"
            if index == commits * 3 // 4:
                fingerprint = "fq%014x" % t
            ctx = context(index, commit=commit_ids[index] if commit_ids else None, hours_apart=hours_apart)
            records.append(make_record(name, "".join(outcomes), index, text=f"v{version}", ids=ids,
                                       model=model, fingerprint=fingerprint, ctx=ctx,
                                       reported={model.split("/")[-1] + "-2026": n}))
        for shard, lines in group_lines(records).items():
            path = directory / shard
            path.parent.mkdir(parents=True, exist_ok=True)
            append_lines(path, lines)
    return store
