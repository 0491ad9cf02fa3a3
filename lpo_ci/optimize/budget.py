"""The search budget: model calls, tokens, dollars and seconds, whichever runs out first.

Only calls that reach a provider count: a cached response costs nothing.
A share of the calls is set aside for the held-out check, so the search can
never spend the budget the acceptance test needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..llm import Completion, ModelClient

BUDGET_EXHAUSTED = "budget exhausted"


@dataclass
class Budget:
    calls: int | None = 300
    tokens: int | None = None
    usd: float | None = None
    seconds: float | None = None
    spent_calls: int = 0
    spent_tokens: int = 0
    spent_usd: float = 0.0
    reserved_calls: int = 0
    stopped_by: str | None = None
    _started: float = field(default_factory=time.monotonic, repr=False)

    def restart_clock(self) -> None:
        self._started = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def reason_to_stop(self, use_reserve: bool = False) -> str | None:
        """Which limit is reached, if any (the call reserve is off limits unless asked)."""
        limit = self.calls if use_reserve or self.calls is None else self.calls - self.reserved_calls
        if limit is not None and self.spent_calls >= limit:
            return "calls"
        if self.tokens is not None and self.spent_tokens >= self.tokens:
            return "tokens"
        if self.usd is not None and self.spent_usd >= self.usd:
            return "usd"
        if self.seconds is not None and self.elapsed >= self.seconds:
            return "seconds"
        return None

    def try_spend_call(self, use_reserve: bool = False) -> bool:
        reason = self.reason_to_stop(use_reserve)
        if reason is not None:
            self.stopped_by = self.stopped_by or reason
            return False
        self.spent_calls += 1
        return True

    def record(self, completion: Completion) -> None:
        self.spent_tokens += completion.prompt_tokens + completion.completion_tokens
        self.spent_usd += completion.cost

    def to_dict(self) -> dict[str, Any]:
        return {"limits": {"calls": self.calls, "tokens": self.tokens, "usd": self.usd,
                           "seconds": self.seconds},
                "spent": {"calls": self.spent_calls, "tokens": self.spent_tokens,
                          "usd": round(self.spent_usd, 6), "seconds": round(self.elapsed, 2)},
                "reserved_for_heldout": self.reserved_calls, "stopped_by": self.stopped_by}

    def describe(self) -> str:
        parts = [f"{self.calls} calls" if self.calls is not None else "unlimited calls"]
        if self.tokens is not None:
            parts.append(f"{self.tokens} tokens")
        if self.usd is not None:
            parts.append(f"${self.usd:.2f}")
        if self.seconds is not None:
            parts.append(f"{self.seconds:.0f} s")
        return ", ".join(parts)


@dataclass
class BudgetedClient(ModelClient):
    """A ModelClient whose uncached calls are paid from a Budget; past it they fail fast."""

    budget: Budget = field(default_factory=Budget)
    use_reserve: bool = False

    async def _call_with_retries(self, prompt: str) -> Completion:
        if not self.budget.try_spend_call(self.use_reserve):
            return Completion(text=None, error=BUDGET_EXHAUSTED)
        completion = await super()._call_with_retries(prompt)
        self.budget.record(completion)
        return completion
