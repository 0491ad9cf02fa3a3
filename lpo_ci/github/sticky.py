"""One sticky report comment per publisher, edited in place and never left lying.

A publisher is what was evaluated (project folder, workflow and job, or the
``comment-key`` input): its hidden marker is a digest of that key, so two
projects in one repository, or two workflows, keep a comment each. Our comment
is the newest one with our marker *written by our own account*
(``identity.Identity``); a comment of an earlier lpo-ci (the unkeyed marker)
is taken over once.

If GitHub refuses the new body, the old comment must not keep saying
something the check now contradicts: it is edited to a short notice with the
new verdict, else deleted (and the notice posted anew), else the caller hears
that a stale comment is still standing. Older duplicates of ours are deleted.
A create that fails after the write may have landed is re-sent only if a new
look finds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .api import GitHubAPI, GitHubError
from .comment import LEGACY_MARKER
from .identity import Identity


@dataclass
class StickyResult:
    action: str                  # created | updated | replaced by a notice | posted a notice
    url: str
    problems: list[str] = field(default_factory=list)


def _body(comment: dict) -> str:
    body = comment.get("body")
    return body if isinstance(body, str) else ""


def _url(answer_data, fallback: str = "") -> str:
    return (answer_data or {}).get("html_url", fallback) if isinstance(answer_data, dict) else fallback


class Sticky:
    def __init__(self, api: GitHubAPI, repo: str, number: int, identity: Identity, marker_text: str):
        self.api, self.repo, self.number = api, repo, number
        self.identity, self.marker = identity, marker_text

    def _mine(self) -> list[dict]:
        comments = self.api.paginate(f"/repos/{self.repo}/issues/{self.number}/comments")
        return [c for c in comments if isinstance(c, dict) and self.identity.owns(c)]

    def _find(self) -> list[dict]:
        """Our comments with this marker, oldest first; else the newest unkeyed one of ours."""
        mine = self._mine()
        keyed = [c for c in mine if _body(c).startswith(self.marker)]
        return keyed or [c for c in mine if _body(c).startswith(LEGACY_MARKER)][-1:]

    def upsert(self, body: str, notice: Callable[[str], str]) -> StickyResult:
        """Post ``body`` in our comment; ``notice(why)`` is the short body used when GitHub
        refuses it. Raises GitHubError when nothing true could be left on the pull request."""
        found = self._find()
        if not found:
            return self._create(body, notice)
        current, older = found[-1], found[:-1]
        result = self._edit(current, body, notice)
        for duplicate in older:
            result.problems += self._retire(duplicate, result.url)
        return result

    def _edit(self, comment: dict, body: str, notice: Callable[[str], str]) -> StickyResult:
        path = f"/repos/{self.repo}/issues/comments/{comment['id']}"
        old_url = comment.get("html_url", "")
        try:
            return StickyResult("updated", _url(self.api.request("PATCH", path, {"body": body}).data, old_url))
        except GitHubError as exc:
            if exc.status == 404 or (exc.status == 403 and self.identity.login is None):
                return self._create(body, notice)  # deleted meanwhile, or another bot's comment
            refused = exc
        why = f"GitHub refused it ({refused.status or 'unreachable'} {refused.message})".strip()
        try:
            data = self.api.request("PATCH", path, {"body": notice(why)}).data
            return StickyResult("replaced by a notice", _url(data, old_url),
                                [f"the full report could not be posted in the comment, which now shows the "
                                 f"verdict and a notice: {refused}"])
        except GitHubError:
            pass
        try:
            self._delete(path)
        except GitHubError as exc:
            raise GitHubError("PATCH", path, refused.status,
                              f"{refused.message}; the earlier report comment {old_url} still shows an earlier "
                              f"result and could neither be edited nor deleted ({exc.status} {exc.message})") from None
        result = self._create(body, notice)
        result.problems.insert(0, f"the earlier report comment could not be edited ({refused}); it was deleted")
        return result

    def _create(self, body: str, notice: Callable[[str], str]) -> StickyResult:
        path = f"/repos/{self.repo}/issues/{self.number}/comments"

        def landed():
            found = [c for c in self._mine() if _body(c).startswith(self.marker)]
            return found[-1] if found else None

        try:
            return StickyResult("created", _url(self.api.request("POST", path, {"body": body}, landed=landed).data))
        except GitHubError as exc:
            refused = exc
        why = f"GitHub refused it ({refused.status or 'unreachable'} {refused.message})".strip()
        try:
            data = self.api.request("POST", path, {"body": notice(why)}, landed=landed).data
        except GitHubError:
            raise refused from None
        return StickyResult("posted a notice", _url(data),
                            [f"the full report could not be posted; the comment shows the verdict and a notice: "
                             f"{refused}"])

    def _delete(self, path: str) -> None:
        """DELETE, where a 404 means done (a retry after a 502 that came once it was deleted)."""
        try:
            self.api.request("DELETE", path)
        except GitHubError as exc:
            if exc.status != 404:
                raise

    def _retire(self, comment: dict, current_url: str) -> list[str]:
        """Delete an older duplicate of ours (two runs raced); failing that, point it at the current one."""
        path = f"/repos/{self.repo}/issues/comments/{comment['id']}"
        try:
            self._delete(path)
            return []
        except GitHubError:
            pass
        try:
            self.api.request("PATCH", path, {"body": f"{self.marker}\nSuperseded by the current lpo-ci report: "
                                                     f"{current_url}\n"})
            return []
        except GitHubError as exc:
            return [f"an older lpo-ci report comment {comment.get('html_url', '')} could not be removed: {exc}"]
