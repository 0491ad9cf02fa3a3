"""Template + examples + model -> per-example outcomes and an accuracy.

Errors (failed calls) are kept apart: they are never counted as wrong
answers, and accuracy is computed on the examples that were scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .llm import ModelClient, Usage
from .render import PromptTemplate
from .scoring import Outcome, Scorer, score_response
from .stats import wilson_interval

RESPONSE_KEEP_CHARS = 2000  # responses can be huge; reports keep the start


@dataclass
class ExampleResult:
    id: str
    outcome: Outcome
    target: str
    extracted: str | None = None
    response: str | None = None
    error: str | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "outcome": self.outcome.value, "target": self.target,
                "extracted": self.extracted, "response": self.response, "error": self.error,
                "cached": self.cached}


@dataclass
class EvalResult:
    results: list[ExampleResult]
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0

    def count(self, outcome: Outcome) -> int:
        return sum(r.outcome is outcome for r in self.results)

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def scored(self) -> int:
        """Examples with an answer to judge (errors excluded)."""
        return self.n - self.count(Outcome.ERROR)

    @property
    def accuracy(self) -> float | None:
        return self.count(Outcome.CORRECT) / self.scored if self.scored else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.count(Outcome.CORRECT), self.scored)

    @property
    def error_rate(self) -> float:
        return self.count(Outcome.ERROR) / self.n if self.n else 0.0

    def outcomes(self) -> dict[str, Outcome]:
        return {r.id: r.outcome for r in self.results}

    def first_error(self) -> str | None:
        return next((r.error for r in self.results if r.error), None)

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n, "accuracy": self.accuracy, "interval": list(self.interval),
            "correct": self.count(Outcome.CORRECT), "wrong": self.count(Outcome.WRONG),
            "format_failures": self.count(Outcome.FORMAT_FAILURE), "errors": self.count(Outcome.ERROR),
            "usage": self.usage.to_dict(), "seconds": round(self.seconds, 3),
        }


async def evaluate(template: PromptTemplate, examples: list, client: ModelClient, scorer: Scorer,
                   progress: Callable[[int], None] | None = None) -> EvalResult:
    """Render every example, call the model, score each answer.

    A rendering error is the template's fault, not the example's: it is raised
    (naming the template line) before any call is made.
    """
    import asyncio

    prompts = [template.render(example.variables) for example in examples]
    client.prefetch(prompts)
    started = time.perf_counter()
    usage = Usage()

    async def one(prompt: str):
        completion = await client.complete(prompt)
        usage.add(completion)
        if progress is not None:
            progress(1)
        return completion

    completions = await asyncio.gather(*(one(p) for p in prompts))
    results = []
    for example, completion in zip(examples, completions):
        score = score_response(scorer, completion.text, example.target)
        text = completion.text
        results.append(ExampleResult(
            id=example.id, outcome=score.outcome, target=example.target, extracted=score.extracted,
            response=text[:RESPONSE_KEEP_CHARS] if text is not None else None,
            error=completion.error, cached=completion.cached))
    return EvalResult(results=results, usage=usage, seconds=time.perf_counter() - started)
