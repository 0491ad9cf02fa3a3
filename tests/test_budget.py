"""The optimizer's budget: calls, tokens, dollars and seconds, whichever runs out first;
the held-out reserve; cached calls are free; what the announcement and the report say."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from lpo_ci import llm
from lpo_ci.cache import ResponseCache
from lpo_ci.llm import Completion, ModelClient, ModelParams
from lpo_ci.optimize.budget import BUDGET_EXHAUSTED, Budget, BudgetedClient


@pytest.fixture(autouse=True)
def no_litellm(monkeypatch):
    """These clients never reach litellm: its background import (seconds) is not started."""
    monkeypatch.setattr(llm, "start_litellm_import", lambda: None)


def test_defaults_are_300_calls_and_nothing_else():
    budget = Budget()
    assert (budget.calls, budget.tokens, budget.usd, budget.seconds) == (300, None, None, None)
    assert (budget.spent_calls, budget.spent_tokens, budget.spent_usd, budget.reserved_calls) == (0, 0, 0.0, 0)
    assert budget.stopped_by is None and budget.reason_to_stop() is None


@pytest.mark.parametrize("spent, reason", [(6, None), (7, "calls"), (8, "calls")])
def test_the_held_out_reserve_is_off_limits_to_the_search(spent, reason):
    budget = Budget(calls=10, reserved_calls=3, spent_calls=spent)
    assert budget.reason_to_stop() == reason
    assert budget.reason_to_stop(use_reserve=True) is None  # the held-out check may spend it


@pytest.mark.parametrize("spent, reason", [(9, None), (10, "calls"), (11, "calls")])
def test_the_reserve_itself_ends_at_the_call_limit(spent, reason):
    assert Budget(calls=10, reserved_calls=3, spent_calls=spent).reason_to_stop(use_reserve=True) == reason


def test_unlimited_calls_ignore_the_reserve():
    budget = Budget(calls=None, reserved_calls=5, spent_calls=10_000)
    assert budget.reason_to_stop() is None and budget.reason_to_stop(use_reserve=True) is None


@pytest.mark.parametrize("spent, reason", [(99, None), (100, "tokens"), (101, "tokens")])
def test_token_limit(spent, reason):
    assert Budget(calls=None, tokens=100, spent_tokens=spent).reason_to_stop() == reason


@pytest.mark.parametrize("spent, reason", [(0.49, None), (0.5, "usd"), (0.51, "usd")])
def test_dollar_limit(spent, reason):
    assert Budget(calls=None, usd=0.5, spent_usd=spent).reason_to_stop() == reason


def test_a_zero_dollar_budget_allows_no_paid_call():
    assert Budget(calls=None, usd=0.0).reason_to_stop() == "usd"


def test_seconds_limit_and_restarting_the_clock():
    budget = Budget(calls=None, seconds=10)
    budget._started = time.monotonic() - 11
    assert budget.elapsed >= 11 and budget.reason_to_stop() == "seconds"
    budget.restart_clock()
    assert budget.elapsed < 1 and budget.reason_to_stop() is None
    budget._started = time.monotonic() - 9
    assert budget.reason_to_stop() is None


def test_the_first_limit_reached_is_named_in_a_fixed_order():
    budget = Budget(calls=1, tokens=1, usd=0.01, seconds=1, spent_calls=1, spent_tokens=1, spent_usd=0.01)
    budget._started = time.monotonic() - 2
    assert budget.reason_to_stop() == "calls"
    budget.calls = None
    assert budget.reason_to_stop() == "tokens"
    budget.tokens = None
    assert budget.reason_to_stop() == "usd"
    budget.usd = None
    assert budget.reason_to_stop() == "seconds"


def test_spending_a_call_counts_it_and_refusing_names_the_first_limit_once():
    budget = Budget(calls=2, usd=1.0)
    assert budget.try_spend_call() and budget.try_spend_call()
    assert budget.spent_calls == 2 and budget.stopped_by is None
    assert not budget.try_spend_call()
    assert budget.spent_calls == 2 and budget.stopped_by == "calls"
    budget.calls, budget.spent_usd = None, 1.0
    assert not budget.try_spend_call()
    assert budget.stopped_by == "calls"  # the first limit that stopped the search stays the reason


def test_spending_from_the_reserve():
    budget = Budget(calls=3, reserved_calls=2, spent_calls=1)
    assert not budget.try_spend_call()
    assert budget.try_spend_call(use_reserve=True) and budget.spent_calls == 2


def test_record_adds_tokens_and_cost():
    budget = Budget()
    budget.record(Completion(text="a", prompt_tokens=10, completion_tokens=5, cost=0.25))
    budget.record(Completion(text="b", prompt_tokens=1, completion_tokens=2, cost=0.125))
    assert (budget.spent_tokens, budget.spent_usd) == (18, 0.375)
    assert budget.spent_calls == 0  # calls are counted when spent, not when recorded


def test_the_report_shows_limits_spending_and_reserve():
    budget = Budget(calls=50, tokens=1000, usd=0.5, seconds=60, spent_calls=7, spent_tokens=123,
                    spent_usd=0.12345678, reserved_calls=4, stopped_by="usd")
    data = budget.to_dict()
    assert data["limits"] == {"calls": 50, "tokens": 1000, "usd": 0.5, "seconds": 60}
    assert data["spent"]["calls"] == 7 and data["spent"]["tokens"] == 123 and data["spent"]["usd"] == 0.123457
    assert 0 <= data["spent"]["seconds"] < 5
    assert data["reserved_for_heldout"] == 4 and data["stopped_by"] == "usd"
    budget._started = time.monotonic() - 12.3456
    assert budget.to_dict()["spent"]["seconds"] == pytest.approx(12.35, abs=0.02)


@pytest.mark.parametrize("budget, text", [
    (Budget(), "300 calls"),
    (Budget(calls=None), "unlimited calls"),
    (Budget(calls=40, tokens=5000, usd=0.5, seconds=90.4), "40 calls, 5000 tokens, $0.50, 90 s"),
    (Budget(calls=None, usd=1.234), "unlimited calls, $1.23"),
    (Budget(seconds=0.6), "300 calls, 1 s"),
])
def test_the_announcement_describes_the_budget(budget, text):
    assert budget.describe() == text


@dataclass
class ScriptedModel(ModelClient):
    """A model whose every uncached call answers at once, with 3 + 2 tokens costing $0.01."""

    calls: int = 0

    async def _call_with_retries(self, prompt: str) -> Completion:
        self.calls += 1
        return Completion(text=f"answer to {prompt}", prompt_tokens=3, completion_tokens=2, cost=0.01)


@dataclass
class Budgeted(BudgetedClient, ScriptedModel):
    pass


def test_budgeted_client_pays_uncached_calls_and_fails_fast_past_the_budget(tmp_path):
    budget = Budget(calls=3, reserved_calls=1)
    client = Budgeted(ModelParams(model="m"), cache=ResponseCache(tmp_path), budget=budget)

    async def run(prompts):
        return await client.complete_all(prompts)

    first = asyncio.run(run(["a", "b"]))
    assert [c.text for c in first] == ["answer to a", "answer to b"] and client.calls == 2
    assert (budget.spent_calls, budget.spent_tokens, budget.spent_usd) == (2, 10, 0.02)
    (refused,) = asyncio.run(run(["c"]))  # the last call is the held-out reserve
    assert refused.text is None and refused.error == BUDGET_EXHAUSTED and client.calls == 2
    assert budget.stopped_by == "calls"
    cached = asyncio.run(run(["a", "b"]))  # cached answers are free, even past the budget
    assert all(c.cached for c in cached) and budget.spent_calls == 2
    client.use_reserve = True
    (held_out,) = asyncio.run(run(["c"]))
    assert held_out.text == "answer to c" and budget.spent_calls == 3 and client.calls == 3
    client.cache.close()


def test_budgeted_client_stops_at_the_dollar_limit(tmp_path):
    budget = Budget(calls=None, usd=0.025)
    client = Budgeted(ModelParams(model="m"), budget=budget)
    answers = [asyncio.run(client.complete(p)) for p in ("a", "b", "c", "d")]
    assert [a.text is not None for a in answers] == [True, True, True, False]
    assert budget.spent_usd == pytest.approx(0.03) and budget.stopped_by == "usd"


class Clock:
    """A monotonic clock the test moves by hand, so a time limit is tested at its boundary."""

    def __init__(self, now: float):
        self.now = now

    def monotonic(self) -> float:
        return self.now


def test_the_seconds_limit_is_reached_at_exactly_the_limit(monkeypatch):
    from lpo_ci.optimize import budget as budget_module

    clock = Clock(100.0)
    monkeypatch.setattr(budget_module, "time", clock)
    budget = Budget(calls=None, seconds=10, _started=100.0)
    clock.now = 109.5
    assert budget.elapsed == 9.5 and budget.reason_to_stop() is None
    clock.now = 110.0
    assert budget.reason_to_stop() == "seconds" and not budget.try_spend_call()
    clock.now = 200.0
    budget.restart_clock()
    assert budget.elapsed == 0.0 and budget._started == 200.0


def test_the_report_rounds_seconds_to_hundredths(monkeypatch):
    from lpo_ci.optimize import budget as budget_module

    clock = Clock(12.3456)
    monkeypatch.setattr(budget_module, "time", clock)
    assert Budget(_started=0.0).to_dict()["spent"]["seconds"] == 12.35


def test_refusing_a_call_answers_false_not_a_falsy_value():
    budget = Budget(calls=0)
    assert budget.try_spend_call() is False and budget.stopped_by == "calls"
    assert Budget().try_spend_call() is True


def test_the_clock_stays_out_of_the_budgets_repr():
    assert "_started" not in repr(Budget()) and "calls=300" in repr(Budget())
