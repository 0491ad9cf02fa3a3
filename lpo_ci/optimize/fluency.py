"""The fluency guard: a candidate that reads clearly worse than the head is never scored.

Edit operators shuffle, drop and insert words; a shuffle can win on a small model and
still be word salad no one would commit ("Be brief one exact. Answer True or False in and
word."). A base language model is a good judge of "is this normal text here", and the
embedded one is always at hand. For every group of lines a candidate changes it asks two
questions, in mean log-likelihood per token after the text before them: do the new lines
read as well as the head's lines they replace, and do the next few words after the edit,
the same words in both versions, still read as well? A candidate that falls more than a
threshold below the head on either is rejected. The second question catches a one-word
deletion that breaks a long line ("Be and exact."), which moves the line's mean too little;
it compares the same tokens, so it is the steadier of the two. Text the base version
already had (a restore) is human-written and passes. Thresholds and the number of words
were chosen by measurement (``benchmarks/bench_lpo_fluency.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from ..patch import changed_lines

DEFAULT_THRESHOLD = 0.75       # nats per token, the changed lines
DEFAULT_AFTER_WORDS = 3        # words after an edit that must still read as well (0: not asked)
DEFAULT_AFTER_THRESHOLD = 1.8  # nats per token, those words
CONTEXT_LINES = 12       # lines of text before the edit the judge reads
COMMENT = re.compile(r"\{#.*?#\}\n?", re.DOTALL)
WORD = re.compile(r"\s*\S+|\s+$")  # a word with the white space before it: they join back to the text

Scorer = Callable[[str, str], Awaitable[list[tuple[str, float]]]]  # (token's text, log-probability)


async def local_scorer(context: str, text: str) -> list[tuple[str, float]]:
    """Per-token log-probabilities from the embedded model, with each token's text."""
    from ..local_model import token_logprobs_async

    return [(t.token, t.logprob) for t in await token_logprobs_async(context, text)]


@dataclass
class Judgement:
    head: float        # mean log-likelihood per token of the head's lines
    candidate: float   # ... of the candidate's lines
    head_text: str
    candidate_text: str
    after_head: float | None = None       # ... of the words after the edit, in the head
    after_candidate: float | None = None  # ... of the same words, after the candidate's edit

    @property
    def drop(self) -> float:
        return self.head - self.candidate

    @property
    def after_drop(self) -> float | None:
        if self.after_head is None or self.after_candidate is None:
            return None
        return self.after_head - self.after_candidate


@dataclass
class FluencyGuard:
    """Judges candidates against the head; remembers every score it computed."""

    head: str
    base: str | None = None
    threshold: float = DEFAULT_THRESHOLD
    after_words: int = DEFAULT_AFTER_WORDS
    after_threshold: float = DEFAULT_AFTER_THRESHOLD
    scorer: Scorer | None = None  # default: the embedded model
    checked: int = 0
    rejected: int = 0
    worst: list[dict] = field(default_factory=list)  # the rejected lines, for the report
    _memo: dict[tuple[str, str], list[tuple[str, float]]] = field(default_factory=dict, repr=False)

    async def tokens(self, context: str, text: str) -> list[tuple[str, float]]:
        key = (context, text)
        if key not in self._memo:
            self._memo[key] = await (self.scorer or local_scorer)(context, text)
        return self._memo[key]

    async def mean(self, context: str, text: str) -> float:
        values = [value for _, value in await self.tokens(context, text)]
        return sum(values) / len(values) if values else 0.0

    async def span_mean(self, context: str, text: str, start: int, end: int) -> float:
        """The mean over the tokens of ``text[start:end]``, read from the pass over the whole
        of ``text`` (a causal model gives them the same values): no forward pass of its own,
        unless the tokens' text does not line up with ``text``."""
        tokens = await self.tokens(context, text)
        if "".join(piece for piece, _ in tokens).endswith(text[start:]):
            values, at = [], len(text)
            for piece, value in reversed(tokens):  # offsets from the end: the first token may hold context
                at -= len(piece)
                if start <= at + len(piece) / 2 < end:
                    values.append(value)
            if values:
                return sum(values) / len(values)
        return await self.mean(context + text[:start], text[start:end])

    def _from_base(self, lines: list[str]) -> bool:
        """The candidate's lines appear, in order and whole, in the base version."""
        if self.base is None or not "".join(lines).strip():
            return False
        base_lines = self.base.split("\n")
        n = len(lines)
        return any(base_lines[k:k + n] == lines for k in range(len(base_lines) - n + 1))

    async def judge(self, candidate: str) -> list[Judgement]:
        """One judgement per group of changed lines that can be compared."""
        head_lines, cand_lines = self.head.split("\n"), candidate.split("\n")
        judgements = []
        for i1, i2, j1, j2 in changed_lines(self.head, candidate):
            new = cand_lines[j1:j2]
            new_text = "\n".join(new)
            if not new_text.strip() or self._from_base(new):
                continue  # lines deleted whole, or restored from the base: nothing to judge
            old_text = "\n".join(head_lines[i1:i2])
            old_at = i1
            if not old_text.strip():  # new lines where the head had none: judge against the line before
                previous = next((k for k in range(i1 - 1, -1, -1) if head_lines[k].strip()), None)
                if previous is None:
                    continue
                old_at, old_text = previous, head_lines[previous]
            head_context = _context(head_lines, old_at)
            cand_context = _context(cand_lines, j1)
            judgement = Judgement(await self.mean(head_context, old_text), await self.mean(cand_context, new_text),
                                  old_text, new_text)
            if old_at == i1 and self.after_words:  # the same place in both: do the words after still read?
                edit = split_edit(old_text, new_text, self.after_words)
                if edit.after.strip():
                    at_head, at_cand = len(edit.before + edit.old), len(edit.before + edit.new)
                    judgement.after_head = await self.span_mean(head_context, old_text, at_head,
                                                                at_head + len(edit.after))
                    judgement.after_candidate = await self.span_mean(cand_context, new_text, at_cand,
                                                                     at_cand + len(edit.after))
            judgements.append(judgement)
        return judgements

    async def check(self, candidate: str) -> str | None:
        """Why the candidate reads clearly worse than the head, or None."""
        self.checked += 1
        for j in await self.judge(candidate):
            after = j.after_drop
            if j.drop > self.threshold or (after is not None and after > self.after_threshold):
                self.rejected += 1
                if len(self.worst) < 5:
                    self.worst.append({"head": j.head_text[:200], "candidate": j.candidate_text[:200],
                                       "drop": round(j.drop, 2),
                                       "after_drop": None if after is None else round(after, 2)})
                return "reads worse than the head (fluency guard)"
        return None

    def to_dict(self) -> dict:
        return {"checked": self.checked, "rejected": self.rejected, "threshold": self.threshold,
                "after_words": self.after_words, "after_threshold": self.after_threshold,
                "rejected_examples": self.worst}


@dataclass(frozen=True)
class Edit:
    """Two versions of a text, cut where they part: ``before + old + rest`` is the head's,
    ``before + new + rest`` the candidate's, and ``after`` is the first words of ``rest``."""

    before: str
    old: str
    new: str
    after: str


def split_edit(old: str, new: str, after_words: int) -> Edit:
    a, b = WORD.findall(old), WORD.findall(new)
    shortest = min(len(a), len(b))
    prefix = 0
    while prefix < shortest and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < shortest - prefix and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    rest = a[len(a) - suffix:]
    return Edit("".join(a[:prefix]), "".join(a[prefix:len(a) - suffix]), "".join(b[prefix:len(b) - suffix]),
                "".join(rest[:after_words]))


def _context(lines: list[str], at: int) -> str:
    """The text before line ``at``, Jinja comments (the spec) removed: what a reader has read."""
    before = COMMENT.sub("", "\n".join(lines[:at])).split("\n")[-CONTEXT_LINES:]
    text = "\n".join(before)
    return text + "\n" if text.strip() else ""
