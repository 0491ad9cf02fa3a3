"""Template + examples + model -> per-example outcomes and an accuracy.

Errors (failed calls) are kept apart: they are never counted as wrong
answers, and accuracy is computed on the examples that were scored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable
from typing import Any

from .llm import Completion, ModelClient, Usage
from .render import PromptTemplate
from .scoring import Outcome, Scorer, score_response_async
from .stops import cut_at_stops
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
    note: str | None = None  # why an answer is a format failure, or how it was read
    judge: dict[str, Any] | None = None  # a judge model's verdict and reason

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "outcome": self.outcome.value, "target": self.target,
                "extracted": self.extracted, "response": self.response, "error": self.error,
                "cached": self.cached, "note": self.note, "judge": self.judge}


@dataclass
class EvalResult:
    results: list[ExampleResult]
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    # provider-reported model ids and system fingerprints -> answers they gave (see Completion)
    reported_models: dict[str, int] = field(default_factory=dict)
    system_fingerprints: dict[str, int] = field(default_factory=dict)

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
            "reported_models": self.reported_models, "system_fingerprints": self.system_fingerprints,
        }


async def evaluate(template: PromptTemplate, examples: list[Any], client: ModelClient, scorer: Scorer,
                   progress: Callable[[int], None] | None = None,
                   prompts: list[str] | None = None) -> EvalResult:
    """Render every example (unless ``prompts`` holds them already), call the model,
    score each answer.

    A rendering error is the template's fault, not the example's: it is raised
    (naming the template line) before any call is made.
    """
    import asyncio

    if prompts is None:
        prompts = [template.render(example.variables) for example in examples]
    client.prefetch(prompts)
    started = time.perf_counter()
    usage = Usage()

    async def one(prompt: str) -> Completion:
        completion = await client.complete(prompt)
        usage.add(completion)
        if progress is not None:
            progress(1)
        return completion

    completions = await asyncio.gather(*(one(p) for p in prompts))
    # Stops apply after the fact too: to cached responses and to providers that ignore them.
    texts = [cut_at_stops(c.text, client.params.stop) for c in completions]
    scores = await asyncio.gather(*(score_response_async(scorer, text, example.target, example)
                                    for example, text in zip(examples, texts)))
    results = []
    for example, completion, text, score in zip(examples, completions, texts, scores):
        if score.call is not None:  # a judge's model call
            usage.add(score.call)
        results.append(ExampleResult(
            id=example.id, outcome=score.outcome, target=example.target, extracted=score.extracted,
            response=text[:RESPONSE_KEEP_CHARS] if text is not None else None,
            error=completion.error or (score.call.error if score.call is not None else None),
            cached=completion.cached, note=score.note, judge=score.judge))
    return EvalResult(results=results, usage=usage, seconds=time.perf_counter() - started,
                      reported_models=_tally(c.model_id for c in completions),
                      system_fingerprints=_tally(c.system_fingerprint for c in completions))


def _tally(values: Iterable[str | None]) -> dict[str, int]:
    from collections import Counter

    return dict(sorted(Counter(v for v in values if v).items()))
