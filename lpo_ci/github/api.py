"""A small GitHub REST client: the few endpoints publishing needs, done right.

Standard library only (nothing to install in the Action's Python). Transient
answers (5xx, 429, a rate-limited 403) are retried with the wait GitHub asks
for (``Retry-After``, else ``x-ratelimit-reset``), capped; list endpoints are
followed through their ``Link`` headers. The token is sent as a header and
never appears in an error message.

A failed create is not simply sent again: a 502 or a dropped connection can
come *after* GitHub stored the write, so before re-sending, the caller's
``landed`` check looks for what the first attempt may have created.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

from .. import __version__

TRANSIENT = frozenset({429, 500, 502, 503, 504})
MAX_WAIT = 60.0  # seconds: a longer rate-limit wait fails the call instead of stalling the job
PAGE_SIZE = 100
MAX_PAGES = 300  # 30,000 items; past that a list is refused, never silently cut


class GitHubError(Exception):
    """A call that failed for good; ``status`` is the HTTP status (0 when unreachable)."""

    def __init__(self, method: str, path: str, status: int, message: str):
        self.method, self.path, self.status, self.message = method, path, status, message
        super().__init__(f"GitHub API {method} {path}: {status or 'unreachable'} {message}".rstrip())


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    data: Any


def _message(body: bytes) -> str:
    """GitHub's own error message and details, short."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:200]
    if not isinstance(data, dict):
        return ""
    text = str(data.get("message", ""))
    errors = data.get("errors")
    if errors:
        details = [e.get("message") or e.get("code") if isinstance(e, dict) else str(e) for e in errors]
        text += ": " + "; ".join(str(d) for d in details if d)
    return text[:500]


def _next_link(header: str | None) -> str | None:
    for part in (header or "").split(","):
        match = re.match(r'\s*<([^>]+)>\s*;\s*rel="next"', part)
        if match:
            return match.group(1)
    return None


class GitHubAPI:
    def __init__(self, token: str, api_url: str = "https://api.github.com", *, retries: int = 4,
                 timeout: float = 30.0, sleep: Callable[[float], None] | None = None):
        self.api_url = api_url.rstrip("/")
        self._token = token
        self.retries = retries
        self.timeout = timeout
        self._sleep = sleep or time.sleep
        self.calls = 0
        self.retried = 0

    def _wait(self, status: int, headers: dict[str, str], attempt: int) -> float | None:
        """Seconds to wait before retrying, or None if this answer is final."""
        limited = status == 403 and (headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers)
        if status not in TRANSIENT and not limited:
            return None
        if "retry-after" in headers:
            try:
                return float(headers["retry-after"])
            except ValueError:
                pass
        if headers.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in headers:
            try:
                return max(0.0, float(headers["x-ratelimit-reset"]) - time.time())
            except ValueError:
                pass
        return min(2.0 ** attempt, 8.0)

    def request(self, method: str, path: str, body: Any = None, *,
                landed: Callable[[], Any] | None = None) -> Response:
        """One call, retried while the answer is transient. ``landed``, for a create: called
        before each re-send, it returns what an earlier attempt created (then that is the
        answer) or None (then the request is sent again)."""
        url = path if path.startswith("http") else self.api_url + path
        shown = url[len(self.api_url):] if url.startswith(self.api_url) else path
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                   "User-Agent": f"lpo-ci/{__version__}", "Authorization": f"Bearer {self._token}"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(self.retries + 1):
            if attempt and landed is not None:
                created = landed()
                if created is not None:
                    return Response(200, {}, created)
            self.calls += 1
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    raw = answer.read()
                    return Response(answer.status, {k.lower(): v for k, v in answer.headers.items()},
                                    json.loads(raw) if raw else None)
            except urllib.error.HTTPError as exc:
                status, answer_headers = exc.code, {k.lower(): v for k, v in exc.headers.items()}
                message = _message(exc.read())
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                status, answer_headers = 0, {}
                message = str(getattr(exc, "reason", exc))
            wait = 1.0 if status == 0 else self._wait(status, answer_headers, attempt)
            if wait is None or attempt == self.retries or wait > MAX_WAIT:
                raise GitHubError(method, shown, status, message)
            self.retried += 1
            self._sleep(wait)
        raise AssertionError("unreachable")

    def graphql(self, query: str) -> Any:
        """The ``data`` of a GraphQL query (GitHub Enterprise serves it beside ``/api/v3``)."""
        base = self.api_url[: -len("/v3")] if self.api_url.endswith("/api/v3") else self.api_url
        answer = self.request("POST", base + "/graphql", {"query": query}).data or {}
        if answer.get("errors") or not isinstance(answer.get("data"), dict):
            messages = "; ".join(str(e.get("message", e)) for e in answer.get("errors") or [] if isinstance(e, dict))
            raise GitHubError("POST", "/graphql", 200, messages or "no data")
        return answer["data"]

    def file_text(self, repo: str, path: str, ref: str) -> str | None:
        """A file's text at ``ref`` (the contents API), or None if it is not there."""
        import base64
        from urllib.parse import quote

        try:
            data = self.request("GET", f"/repos/{repo}/contents/{quote(path)}?ref={quote(ref)}").data
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(data, dict) or data.get("encoding") != "base64":
            return None  # a folder, a symlink, or a file too large for this endpoint
        return base64.b64decode(data.get("content", "")).decode("utf-8", "replace")

    def paginate(self, path: str) -> list[Any]:
        """Every item of a list endpoint, following ``Link: rel="next"``; a list longer than
        MAX_PAGES pages is an error (a partial list would make a search miss what it looks for)."""
        separator = "&" if "?" in path else "?"
        url = f"{path}{separator}per_page={PAGE_SIZE}"
        items: list[Any] = []
        for _ in range(MAX_PAGES):
            answer = self.request("GET", url)
            items.extend(answer.data or [])
            following = _next_link(answer.headers.get("link"))
            if following is None:
                return items
            url = following
        raise GitHubError("GET", path, 0, f"more than {MAX_PAGES * PAGE_SIZE} items: not all could be read")
