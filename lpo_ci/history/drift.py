"""Gates that only history makes possible, decided on stored outcomes (no model call).

Creeping regression: ten pull requests that each lose two points all pass a
per-change gate. With ``drift_window: N`` the head is also compared with the
best of the last N records of the base branch that share its fingerprint,
pair by pair (one-sided exact McNemar), and fails when the cumulative drop is
larger than ``drift_tolerance`` and significant at ``alpha``.

Model drift: a run that asked the model again (``--lpo-fresh``) is compared
with the previous record of an unchanged template; a significant drop then
says the model changed, not the prompt, naming the model ids the provider
reported before and after.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..stats import mcnemar_one_sided
from . import record as rec
from .series import reported

FAIL, PASS, UNCHECKED = "fail", "pass", "unchecked"


@dataclass
class Paired:
    """Two records compared on the examples both scored (errors left out on either side)."""

    n: int
    worse: int  # right in the reference, not right now
    better: int
    reference_accuracy: float
    accuracy: float
    p_value: float

    @property
    def drop(self) -> float:
        return self.reference_accuracy - self.accuracy


def pair(reference: dict[str, Any], current: dict[str, Any]) -> Paired | None:
    before, after = rec.outcomes(reference), rec.outcomes(current)
    both = [i for i, o in after.items() if o != rec.ERROR and before.get(i, rec.ERROR) != rec.ERROR]
    if not both:
        return None
    right_before = sum(before[i] == rec.CORRECT for i in both)
    right_after = sum(after[i] == rec.CORRECT for i in both)
    worse = sum(before[i] == rec.CORRECT and after[i] != rec.CORRECT for i in both)
    better = sum(after[i] == rec.CORRECT and before[i] != rec.CORRECT for i in both)
    return Paired(len(both), worse, better, right_before / len(both), right_after / len(both),
                  mcnemar_one_sided(worse, better))


@dataclass
class Finding:
    """What a history gate concluded for one template."""

    gate: str            # "drift" or "model_drift"
    status: str          # fail, pass, or unchecked (nothing comparable to check against)
    message: str
    reference: dict[str, Any] | None = None  # commit, date, accuracy of the record compared with
    paired: Paired | None = None
    changes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.paired is not None:
            data["paired"]["drop"] = round(self.paired.drop, 6)
        return data


def _reference(record: dict[str, Any]) -> dict[str, Any]:
    return {"commit": record["commit"], "date": record["commit_date"] or record["run_date"],
            "accuracy": record["accuracy"], "template_sha": record["template_sha"],
            "reported_models": record["reported_models"], "system_fingerprints": record["system_fingerprints"]}


def _points(value: float) -> str:
    return f"{value * 100:.1f} points"


def _stats(paired: Paired, alpha: float) -> str:
    return (f"paired on {paired.n} examples: {paired.worse} right->wrong, {paired.better} wrong->right, "
            f"one-sided exact McNemar p = {paired.p_value:.3g}, alpha {alpha}")


def _when(record: dict[str, Any]) -> str:
    return f"{rec.short(record['commit'])} ({rec.day(record['commit_date'] or record['run_date'])})"


def creeping(window: list[dict[str, Any]], head: dict[str, Any], *, tolerance: float, alpha: float,
             size: int) -> Finding:
    """The head against the best comparable record of ``window`` (the base branch's last records)."""
    comparable = [r for r in window if r["fingerprint"] == head["fingerprint"] and r["outcomes"]]
    if not comparable:
        return Finding("drift", UNCHECKED, f"drift check: none of the base branch's last {size} history "
                                           f"records was made with this template's data, scorer and model "
                                           f"settings (fingerprint {head['fingerprint']}), so nothing to compare")
    best = max(reversed(comparable), key=lambda r: r["accuracy"] if r["accuracy"] is not None else -1.0)
    paired = pair(best, head)
    if paired is None:
        return Finding("drift", UNCHECKED, f"drift check: no example was scored both at {_when(best)} and now",
                       _reference(best))
    after = window[next(i for i, r in enumerate(window) if r is best):] + [head]
    changes = sum(a["template_sha"] != b["template_sha"] for a, b in zip(after, after[1:]))
    over = f"over {changes} change{'s' * (changes != 1)}" if changes else "with no change to the template text"
    fell = f"accuracy fell {_points(paired.drop)} since {_when(best)}, {over}"
    if paired.drop > tolerance and paired.p_value < alpha:
        message = (f"creeping regression: {fell} (drift_tolerance {_points(tolerance)}; "
                   f"{_stats(paired, alpha)})")
        return Finding("drift", FAIL, message, _reference(best), paired, changes)
    if paired.drop > 0:
        verdict = "not significant" if paired.drop > tolerance else "within drift_tolerance"
        message = f"drift: {fell}: {verdict} ({_stats(paired, alpha)})"
    else:
        message = f"drift: no drop since the best of the last {size} records, {_when(best)}"
    return Finding("drift", PASS, message, _reference(best), paired, changes)


def model_drift(previous: dict[str, Any] | None, head: dict[str, Any], *, tolerance: float,
                alpha: float) -> Finding:
    """A fresh run of an unchanged template against its previous record."""
    if previous is None:
        return Finding("model_drift", UNCHECKED, "model-drift check: no earlier record of this template "
                                                 "with the same data, scorer and model settings")
    if previous["template_sha"] != head["template_sha"]:
        return Finding("model_drift", UNCHECKED,
                       f"model-drift check: the template text changed since {_when(previous)}, so a change "
                       "in accuracy cannot be put on the model", _reference(previous))
    paired = pair(previous, head)
    if paired is None:
        return Finding("model_drift", UNCHECKED,
                       f"model-drift check: no example was scored both at {_when(previous)} and now",
                       _reference(previous))
    before, after = reported(previous), reported(head)
    if before != after:
        who = f"the provider reported {before} then and {after} now"
    elif previous["reported_models"]:
        who = f"the provider reported {after} both times, yet its answers changed"
    else:
        who = "the provider reports no model id to tell which"
    if paired.drop > tolerance and paired.p_value < alpha:
        message = (f"model drift: the template is unchanged since {_when(previous)}, yet accuracy fell "
                   f"{_points(paired.drop)} against that record: the model changed, not the prompt; {who} "
                   f"({_stats(paired, alpha)})")
        return Finding("model_drift", FAIL, message, _reference(previous), paired)
    message = (f"model-drift check: accuracy {paired.accuracy:.1%} against {paired.reference_accuracy:.1%} at "
               f"{_when(previous)} with the same template ({_stats(paired, alpha)})")
    return Finding("model_drift", PASS, message, _reference(previous), paired)
