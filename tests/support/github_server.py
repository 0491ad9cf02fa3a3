"""A GitHub REST API stand-in on 127.0.0.1 for testing the PR publisher.

It serves the few endpoints publishing uses (pull request and its files, issue
comments and their deletion, review comments, reviews, file contents, the
authenticated user and the GraphQL viewer) and enforces the rules GitHub
enforces there, so a publisher that passes against it has its auth, pagination,
edit-in-place, diff-line and retry logic checked over real sockets, without
network access or a token:

* ``Authorization: Bearer <token>`` / ``token <token>``, else 401; each token
  is one kind of identity: the workflow's ``GITHUB_TOKEN`` (github-actions[bot]),
  a GitHub App installation token (``<slug>[bot]``) or a personal access token
  (a user); ``GET /user`` answers only a user token (403 "Resource not
  accessible by integration" for the two installation tokens, as GitHub does),
  the GraphQL ``viewer`` query answers all three;
* what a token creates is authored by its identity; a comment can be edited
  or deleted by its author, and by a maintainer's PAT (write access edits
  anyone's comment), else 403;
* pagination by ``per_page``/``page`` with absolute ``Link`` URLs;
* review comments must sit on a line of a hunk of the PR's diff, a range
  must stay within one hunk, and ``start_line`` must precede ``line``
  (GitHub rejects ``start_line == line``); nothing is stored on a 422;
* bodies over 65536 characters are rejected;
* scripted faults (502, 429, rate-limited 403 with ``Retry-After`` and
  ``x-ratelimit-*``) on every Nth request, permanent failures by route, and
  one-off faults by route (``inject``), optionally *after* the write landed
  (a 502 from the edge while the write went through).

Not covered: the legacy diff ``position`` of review comments (422 here), and
commenting on older commits of the PR (only the head sha is accepted).

Stdlib only. Typical use::

    with fake_github() as gh:
        gh.add_pull(7, head_sha="a" * 40, files=[{"filename": "p.txt", "patch": "@@ -1 +1 @@\\n-a\\n+b"}])
        publish(api_url=gh.url, token=gh.token, repo="octo/prompts", pr=7)
        assert gh.issue_comments[7][0]["user"]["login"] == gh.bot_login
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import zlib
from datetime import datetime, timedelta, timezone
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, urlencode

from tests.support.loopback import LoopbackServer, TrackingHandler

__all__ = ["FakeGitHub", "Identity", "MAX_BODY", "fake_github"]

MAX_BODY = 65536   # GitHub's limit on comment and review bodies, in characters
BOT_ID = 41898282  # github-actions[bot]'s real user id
DOCS = "https://docs.github.com/rest"
_CLOCK_START = datetime(2024, 1, 1, tzinfo=timezone.utc)

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_REPO = r"^/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
_ROUTES = [  # (method, path pattern, FakeGitHub method)
    ("GET", _REPO + r"/pulls/(?P<number>\d+)$", "_get_pull"),
    ("GET", _REPO + r"/pulls/(?P<number>\d+)/files$", "_list_files"),
    ("GET", _REPO + r"/issues/(?P<number>\d+)/comments$", "_list_issue_comments"),
    ("POST", _REPO + r"/issues/(?P<number>\d+)/comments$", "_create_issue_comment"),
    ("PATCH", _REPO + r"/issues/comments/(?P<id>\d+)$", "_edit_issue_comment"),
    ("GET", _REPO + r"/pulls/(?P<number>\d+)/comments$", "_list_review_comments"),
    ("GET", _REPO + r"/pulls/(?P<number>\d+)/reviews$", "_list_reviews"),
    ("POST", _REPO + r"/pulls/(?P<number>\d+)/reviews$", "_create_review"),
    ("DELETE", _REPO + r"/issues/comments/(?P<id>\d+)$", "_delete_issue_comment"),
    ("GET", _REPO + r"/contents/(?P<path>.+)$", "_get_contents"),
]
_GLOBAL_ROUTES = [("GET", re.compile(r"^/user$"), "_get_user"), ("POST", re.compile(r"^/graphql$"), "_graphql")]
_ROUTES = [(method, re.compile(pattern), handler) for method, pattern, handler in _ROUTES]


# --------------------------------------------------------------------------
# Diffs: which lines of a file's patch a review comment may point at.
# --------------------------------------------------------------------------

class _Hunk:
    """One ``@@`` hunk: its header and (kind, old line, new line) per body line."""

    def __init__(self, header: str):
        self.header = header
        self.text: list[str] = []
        self.lines: list[tuple[str, int | None, int | None]] = []

    def index(self, line: int, side: str) -> int | None:
        """Position of ``line`` in this hunk on ``side`` (RIGHT: '+' and context, LEFT: '-' and context)."""
        for position, (_kind, old, new) in enumerate(self.lines):
            if (new if side == "RIGHT" else old) == line:
                return position
        return None


def _parse_patch(patch: str | None) -> list[_Hunk]:
    """Hunks of a unified-diff patch as GitHub's pulls/files gives it (no file headers).

    Line counts from the hunk header decide where a hunk ends, so a trailing
    newline or a blank context line that lost its leading space still parses.
    """
    hunks: list[_Hunk] = []
    hunk, old, new, old_left, new_left = None, 0, 0, 0, 0
    for raw in (patch or "").split("\n"):
        header = _HUNK_HEADER.match(raw)
        if header:
            hunk = _Hunk(raw)
            hunks.append(hunk)
            old, new = int(header[1]), int(header[3])
            old_left = int(header[2]) if header[2] is not None else 1
            new_left = int(header[4]) if header[4] is not None else 1
            continue
        if hunk is None or raw.startswith("\\"):   # before any hunk, or "\ No newline at end of file"
            continue
        if raw.startswith("+") and new_left > 0:
            entry, new, new_left = ("+", None, new), new + 1, new_left - 1
        elif raw.startswith("-") and old_left > 0:
            entry, old, old_left = ("-", old, None), old + 1, old_left - 1
        elif (raw.startswith(" ") or raw == "") and old_left > 0 and new_left > 0:
            entry, old, new, old_left, new_left = (" ", old, new), old + 1, new + 1, old_left - 1, new_left - 1
        else:
            continue
        hunk.lines.append(entry)
        hunk.text.append(raw)
    return hunks


# --------------------------------------------------------------------------
# The HTTP server.
# --------------------------------------------------------------------------

class _Handler(TrackingHandler):
    protocol_version = "HTTP/1.1"    # keep-alive, as api.github.com
    disable_nagle_algorithm = True
    timeout = 60

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        """Silent: FakeGitHub.log records every request instead."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""   # always drain: keeps keep-alive in sync
        path, _, query = self.path.partition("?")
        status, payload, headers, content_type = self.server.fake._handle(
            method, path, query, self.headers.get("Authorization"), raw)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _error(message: str, status: int, **extra) -> dict:
    return {"message": message, **extra, "documentation_url": DOCS, "status": str(status)}


def _too_long(resource: str) -> tuple[int, dict]:
    return 422, _error("Validation Failed", 422, errors=[{
        "resource": resource, "code": "custom", "field": "body",
        "message": f"body is too long (maximum is {MAX_BODY} characters)"}])


def _unprocessable(reason: str) -> tuple[int, dict]:
    return 422, _error("Unprocessable Entity", 422, errors=[reason])


def _invalid(reason: str) -> tuple[int, dict]:
    return 422, _error(f"Invalid request.\n\n{reason}", 422)


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Identity:
    """Who a token acts as. ``kind``: "actions" (the workflow's GITHUB_TOKEN), "app" (a GitHub
    App installation token) or "pat" (a user's personal access token); ``maintainer``: the
    account has write access, so it may edit anyone's comment."""

    login: str
    kind: str = "actions"
    maintainer: bool = False

    @property
    def user_type(self) -> str:
        return "User" if self.kind == "pat" else "Bot"


@dataclass
class _Injected:
    method: str
    pattern: str
    status: int
    times: int
    after_write: bool


class FakeGitHub(LoopbackServer):
    """GitHub REST API stand-in serving one repository; state is plain attributes for assertions.

    ``issue_comments``, ``review_comments`` and ``reviews`` map a PR number to
    its items, oldest first; ``log`` holds (method, path, status) per request.
    ``token`` acts as github-actions[bot]; ``tokens`` adds more (token -> Identity).
    """

    bot_login = "github-actions[bot]"
    handler_class = _Handler
    thread_name = "fake-github"

    def __init__(self, *, token: str = "ghs_test_token", repo: str = "octo/prompts",
                 fault_every: int = 0, faults: tuple[int, ...] = (502, 429, 403), retry_after: str = "0",
                 fail_always: dict[tuple[str, str], int] | None = None, per_page_max: int = 100,
                 tokens: dict[str, Identity] | None = None, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host=host, port=port)
        self.token = token
        self.tokens = {token: Identity(self.bot_login, "actions"), **(tokens or {})}
        self._injected: list[_Injected] = []
        self._caller: Identity = self.tokens[token]
        self.repo = repo
        self.fault_every = fault_every
        self.faults = tuple(faults)
        self.retry_after = retry_after
        self.fail_always = dict(fail_always or {})
        self.per_page_max = per_page_max
        self.issue_comments: dict[int, list[dict]] = {}
        self.review_comments: dict[int, list[dict]] = {}
        self.reviews: dict[int, list[dict]] = {}
        self.log: list[tuple[str, str, int]] = []
        self._pulls: dict[int, dict] = {}
        self._hunks: dict[tuple[int, str], list[_Hunk]] = {}
        self._contents: dict[tuple[str, str], str] = {}  # (commit sha, path) -> text
        self._lock = threading.RLock()
        self._next_id = 1_000_001   # one sequence for all kinds, so mixed-up ids never match by chance
        self._ticks = 0
        self._authenticated = 0
        self._faults_sent = 0

    @property
    def url(self) -> str:
        """API base URL, like https://api.github.com (no trailing slash)."""
        return f"http://{self.host}:{self.port}"

    # --- seeding ---

    def add_pull(self, number: int, *, head_sha: str, base_ref: str = "main", head_ref: str = "feature",
                 files: list[dict], base_sha: str = "0" * 40) -> None:
        """Add (or replace, to simulate a push) an open PR whose diff is ``files``' patches;
        a file's optional ``content`` is its text at the head commit (the contents API)."""
        normalised = []
        for item in files:
            if item.get("content") is not None:
                with self._lock:
                    self._contents[(head_sha, item["filename"])] = item["content"]
            hunks = _parse_patch(item.get("patch"))
            additions = sum(kind == "+" for hunk in hunks for kind, _, _ in hunk.lines)
            deletions = sum(kind == "-" for hunk in hunks for kind, _, _ in hunk.lines)
            entry = {"filename": item["filename"], "status": item.get("status", "modified"),
                     "additions": item.get("additions", additions), "deletions": item.get("deletions", deletions),
                     "changes": item.get("changes", additions + deletions)}
            if item.get("patch") is not None:   # GitHub omits patch for binary and huge files
                entry["patch"] = item["patch"]
            normalised.append(entry)
        with self._lock:
            self._pulls[number] = {"number": number, "head_sha": head_sha, "head_ref": head_ref,
                                   "base_ref": base_ref, "base_sha": base_sha, "files": normalised}
            self._hunks = {key: value for key, value in self._hunks.items() if key[0] != number}
            for entry in normalised:
                self._hunks[(number, entry["filename"])] = _parse_patch(entry.get("patch"))
            self.issue_comments.setdefault(number, [])
            self.review_comments.setdefault(number, [])
            self.reviews.setdefault(number, [])

    def add_contents(self, sha: str, path: str, text: str) -> None:
        """A file's text at a commit, for the contents API (the base branch's pyproject.toml)."""
        with self._lock:
            self._contents[(sha, path)] = text

    def inject(self, method: str, pattern: str, status: int, *, times: int = 1, after_write: bool = False) -> None:
        """Answer the next ``times`` requests matching ``method`` and the path regex ``pattern``
        with ``status``; with ``after_write`` the request is carried out first (the write lands,
        the client sees the failure), as when GitHub's edge times out on a slow write."""
        with self._lock:
            self._injected.append(_Injected(method.upper(), pattern, status, times, after_write))

    def add_issue_comment(self, number: int, body: str, *, login: str = "someone",
                          user_type: str = "User") -> dict:
        """Seed a comment on PR ``number`` (added with add_pull first); returns a copy of it."""
        with self._lock:
            if number not in self._pulls:
                raise KeyError(f"no pull request #{number}: call add_pull() first")
            comment = self._new_issue_comment(number, body, login, user_type)
            return copy.deepcopy(comment)

    # --- helpers, called with the lock held ---

    def _now(self) -> str:
        """A fake clock that ticks once per stored change: deterministic, strictly increasing timestamps."""
        self._ticks += 1
        return (_CLOCK_START + timedelta(seconds=self._ticks)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _user(self, login: str, user_type: str) -> dict:
        user_id = BOT_ID if login == self.bot_login else zlib.crc32(login.encode("utf-8"))
        return {"login": login, "id": user_id, "type": user_type}

    def _author(self) -> dict:
        """The user object of the identity making the current request."""
        return self._user(self._caller.login, self._caller.user_type)

    def _may_change(self, comment: dict) -> bool:
        return comment["user"]["login"] == self._caller.login or self._caller.maintainer

    def _new_issue_comment(self, number: int, body: str, login: str, user_type: str) -> dict:
        comment_id, now = self._new_id(), self._now()
        comment = {"id": comment_id, "node_id": f"IC_{comment_id}", "body": body,
                   "user": self._user(login, user_type), "created_at": now, "updated_at": now,
                   "html_url": f"https://github.com/{self.repo}/pull/{number}#issuecomment-{comment_id}",
                   "author_association": "NONE" if user_type == "Bot" else "CONTRIBUTOR"}
        self.issue_comments.setdefault(number, []).append(comment)
        return comment

    def _page(self, items: list[dict], path: str, query: str) -> tuple[int, list[dict], dict[str, str]]:
        """One page of ``items`` and GitHub's Link header (first/prev/next/last, absolute URLs)."""
        pairs = parse_qsl(query, keep_blank_values=True)
        params = dict(pairs)
        per_page = min(max(_int_param(params, "per_page", 30), 1), self.per_page_max)
        page = max(_int_param(params, "page", 1), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        kept = [(key, value) for key, value in pairs if key != "page"]

        def link(number: int, rel: str) -> str:
            return f'<{self.url}{path}?{urlencode(kept + [("page", str(number))])}>; rel="{rel}"'

        links = []
        if page > 1:
            links += [link(min(page - 1, last), "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        chunk = copy.deepcopy(items[(page - 1) * per_page: page * per_page])
        return 200, chunk, {"Link": ", ".join(links)} if links else {}

    # --- request handling ---

    def _handle(self, method: str, path: str, query: str, authorization: str | None,
                raw: bytes) -> tuple[int, object, dict[str, str], str]:
        """Answer one request: (status, JSON payload or HTML bytes, headers, content type)."""
        content_type = "application/json; charset=utf-8"
        with self._lock:
            scheme, _, credential = (authorization or "").strip().partition(" ")
            identity = self.tokens.get(credential.strip())
            if scheme.lower() not in ("bearer", "token") or identity is None:
                status, payload, headers = 401, _error("Bad credentials", 401), {}
            else:
                self._caller = identity
                self._authenticated += 1
                headers = self._rate_headers()
                fault = self._fault_status()
                injected = self._take_injected(method, path)
                if fault is not None:
                    status, payload, extra, content_type = self._fault(fault)
                    headers.update(extra)
                elif injected is not None and not injected.after_write:
                    status, payload, extra, content_type = self._fault(injected.status)
                    headers.update(extra)
                else:
                    status, payload, extra = self._route(method, path, query, raw)
                    headers.update(extra)
                    if injected is not None:   # the write landed; the client is told otherwise
                        status, payload, extra, content_type = self._fault(injected.status)
                        headers.update(extra)
            self.log.append((method, path, status))
        return status, payload, headers, content_type

    def _rate_headers(self) -> dict[str, str]:
        """The x-ratelimit-* headers GitHub sends on every authenticated answer (remaining never 0 here)."""
        return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(max(5000 - self._authenticated, 1)),
                "x-ratelimit-reset": str(int(time.time()) + 3600),
                "x-ratelimit-used": str(self._authenticated), "x-ratelimit-resource": "core"}

    def _take_injected(self, method: str, path: str) -> _Injected | None:
        for entry in self._injected:
            if entry.method in (method, "*") and re.search(entry.pattern, path):
                entry.times -= 1
                if entry.times <= 0:
                    self._injected.remove(entry)
                return entry
        return None

    def _fault_status(self) -> int | None:
        if self.fault_every <= 0 or not self.faults or self._authenticated % self.fault_every:
            return None
        status = self.faults[self._faults_sent % len(self.faults)]
        self._faults_sent += 1
        return status

    def _fault(self, status: int) -> tuple[int, object, dict[str, str], str]:
        """A transient failure as GitHub sends it; the request itself is dropped."""
        json_type = "application/json; charset=utf-8"
        if status == 403:
            return 403, _error("API rate limit exceeded for installation.", 403), {
                "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 1),
                "Retry-After": self.retry_after}, json_type
        if status == 429:
            return 429, _error("You have exceeded a secondary rate limit. Please wait a few minutes "
                               "before you try again.", 429), {"Retry-After": self.retry_after}, json_type
        if status in (502, 503):   # GitHub's edge answers these with an HTML page, not JSON
            phrase = HTTPStatus(status).phrase
            page = f"<html><body><h1>{status} {phrase}</h1>Unicorn! Try again.</body></html>\n"
            return status, page.encode("utf-8"), {}, "text/html; charset=utf-8"
        return status, _error(_phrase(status), status), {}, json_type

    def _route(self, method: str, path: str, query: str, raw: bytes) -> tuple[int, object, dict[str, str]]:
        for (pattern_method, pattern), status in self.fail_always.items():
            if pattern_method.upper() in (method, "*") and re.search(pattern, path):
                message = "Resource not accessible by integration" if status == 403 else _phrase(status)
                return status, _error(message, status), {}
        for route_method, pattern, handler in _GLOBAL_ROUTES:
            if route_method == method and pattern.match(path):
                body = None
                if method == "POST":
                    try:
                        body = json.loads(raw) if raw.strip() else {}
                    except ValueError:
                        return 400, _error("Problems parsing JSON", 400), {}
                answer = getattr(self, handler)(body)
                return answer if len(answer) == 3 else (*answer, {})
        for route_method, pattern, handler in _ROUTES:
            match = pattern.match(path)
            if route_method != method or match is None:
                continue
            owner, name = match["owner"], match["name"]
            if f"{owner}/{name}".lower() != self.repo.lower():   # GitHub names are case-insensitive
                break
            body = None
            if method in ("POST", "PATCH", "PUT"):
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    return 400, _error("Problems parsing JSON", 400), {}
            answer = getattr(self, handler)(match, path, query, body)
            return answer if len(answer) == 3 else (*answer, {})
        return 404, _error("Not Found", 404), {}

    def _pull_or_none(self, match: re.Match) -> dict | None:
        return self._pulls.get(int(match["number"]))

    # --- endpoints (lock held) ---

    def _get_user(self, body):
        """The authenticated user: refused to installation tokens (the GITHUB_TOKEN, an App's)."""
        if self._caller.kind != "pat":
            return 403, {"message": "Resource not accessible by integration",
                         "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
                         "status": "403"}
        return 200, {**self._author(), "name": self._caller.login, "site_admin": False}

    def _graphql(self, body):
        """Only ``{ viewer { login databaseId } }``: who the token is, for every kind of token."""
        query = (body or {}).get("query") if isinstance(body, dict) else None
        if not isinstance(query, str) or not re.search(r"\bviewer\s*\{", query):
            return 200, {"errors": [{"message": "this stand-in answers only the viewer query"}]}
        user = self._author()
        return 200, {"data": {"viewer": {"login": user["login"], "databaseId": user["id"]}}}

    def _get_pull(self, match, path, query, body):
        pull = self._pull_or_none(match)
        if pull is None:
            return 404, _error("Not Found", 404)
        return 200, {"number": pull["number"], "state": "open",
                     "head": {"sha": pull["head_sha"], "ref": pull["head_ref"]},
                     "base": {"sha": pull["base_sha"], "ref": pull["base_ref"]},
                     "html_url": f"https://github.com/{self.repo}/pull/{pull['number']}"}

    def _get_contents(self, match, path, query, body):
        """A file at ``?ref=`` as the contents API gives it: base64 in JSON."""
        import base64
        from urllib.parse import unquote

        text = self._contents.get((dict(parse_qsl(query)).get("ref", ""), unquote(match["path"])))
        if text is None:
            return 404, _error("Not Found", 404)
        data = text.encode("utf-8")
        return 200, {"type": "file", "encoding": "base64", "path": unquote(match["path"]), "size": len(data),
                     "content": base64.encodebytes(data).decode("ascii")}

    def _list_files(self, match, path, query, body):
        pull = self._pull_or_none(match)
        if pull is None:
            return 404, _error("Not Found", 404)
        return self._page(pull["files"], path, query)

    def _list_issue_comments(self, match, path, query, body):
        if self._pull_or_none(match) is None:
            return 404, _error("Not Found", 404)
        return self._page(self.issue_comments[int(match["number"])], path, query)

    def _create_issue_comment(self, match, path, query, body):
        number = int(match["number"])
        if self._pull_or_none(match) is None:
            return 404, _error("Not Found", 404)
        problem = self._check_comment_body(body.get("body"), "IssueComment")
        if problem:
            return problem
        comment = self._new_issue_comment(number, body["body"], self._caller.login, self._caller.user_type)
        location = f"{self.url}/repos/{self.repo}/issues/comments/{comment['id']}"
        return 201, copy.deepcopy(comment), {"Location": location}

    def _edit_issue_comment(self, match, path, query, body):
        comment_id = int(match["id"])
        comment = next((c for comments in self.issue_comments.values() for c in comments
                        if c["id"] == comment_id), None)
        if comment is None:
            return 404, _error("Not Found", 404)
        if not self._may_change(comment):
            return 403, _error("Resource not accessible by integration", 403)
        problem = self._check_comment_body(body.get("body"), "IssueComment")
        if problem:
            return problem
        comment["body"] = body["body"]
        comment["updated_at"] = self._now()
        return 200, copy.deepcopy(comment)

    def _delete_issue_comment(self, match, path, query, body):
        comment_id = int(match["id"])
        for comments in self.issue_comments.values():
            for comment in comments:
                if comment["id"] == comment_id:
                    if not self._may_change(comment):
                        return 403, _error("Resource not accessible by integration", 403)
                    comments.remove(comment)
                    return 204, b""
        return 404, _error("Not Found", 404)

    def _list_review_comments(self, match, path, query, body):
        if self._pull_or_none(match) is None:
            return 404, _error("Not Found", 404)
        return self._page(self.review_comments[int(match["number"])], path, query)

    def _list_reviews(self, match, path, query, body):
        if self._pull_or_none(match) is None:
            return 404, _error("Not Found", 404)
        return self._page(self.reviews[int(match["number"])], path, query)

    def _create_review(self, match, path, query, body):
        pull = self._pull_or_none(match)
        if pull is None:
            return 404, _error("Not Found", 404)
        states = {"COMMENT": "COMMENTED", "APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED",
                  None: "PENDING", "": "PENDING"}   # no event: a draft review only its author sees
        event = body.get("event")
        if not isinstance(event, (str, type(None))) or event not in states:
            return _unprocessable(f"Invalid event {event!r}: use APPROVE, REQUEST_CHANGES or COMMENT")
        commit_id = body.get("commit_id") or pull["head_sha"]   # GitHub defaults to the head commit
        if commit_id != pull["head_sha"]:
            return _unprocessable("Commit could not be resolved: commit_id is not the pull request's head")
        review_body = body.get("body") or ""
        if not isinstance(review_body, str):
            return _invalid('For "body", it is not a string.')
        if len(review_body) > MAX_BODY:
            return _too_long("PullRequestReview")
        comments = body.get("comments") or []
        if not isinstance(comments, list) or not all(isinstance(c, dict) for c in comments):
            return _invalid('For "comments", it is not an array of objects.')
        placed = []
        for comment in comments:
            problem = self._check_comment_body(comment.get("body"), "PullRequestReviewComment")
            if problem:
                return problem
            spot = self._place(pull["number"], comment)
            if isinstance(spot, tuple):
                return spot
            placed.append((comment, spot))

        review_id, now = self._new_id(), self._now()
        review = {"id": review_id, "node_id": f"PRR_{review_id}", "user": self._author(),
                  "body": review_body, "state": states[event], "commit_id": commit_id,
                  "html_url": f"https://github.com/{self.repo}/pull/{pull['number']}"
                              f"#pullrequestreview-{review_id}",
                  "author_association": "NONE", "submitted_at": None if event in (None, "") else now}
        for comment, spot in placed:
            comment_id = self._new_id()
            self.review_comments[pull["number"]].append({
                "id": comment_id, "node_id": f"PRRC_{comment_id}", "pull_request_review_id": review_id,
                "path": comment["path"], "body": comment["body"], "commit_id": commit_id,
                "original_commit_id": commit_id, "user": self._author(),
                "created_at": now, "updated_at": now, "subject_type": "line", "diff_hunk": spot["diff_hunk"],
                "line": spot["line"], "original_line": spot["line"], "side": spot["side"],
                "start_line": spot["start_line"], "original_start_line": spot["start_line"],
                "start_side": spot["start_side"],
                "html_url": f"https://github.com/{self.repo}/pull/{pull['number']}#discussion_r{comment_id}"})
        self.reviews[pull["number"]].append(review)
        return 200, copy.deepcopy(review)

    def _check_comment_body(self, text, resource: str) -> tuple[int, dict] | None:
        if text is None:
            return _invalid('"body" wasn\'t supplied.')
        if not isinstance(text, str):
            return _invalid('For "body", it is not a string.')
        if not text.strip():
            return 422, _error("Validation Failed", 422, errors=[
                {"resource": resource, "code": "missing_field", "field": "body"}])
        if len(text) > MAX_BODY:
            return _too_long(resource)
        return None

    def _place(self, number: int, comment: dict) -> dict | tuple[int, dict]:
        """Where a review comment lands in the diff, or the 422 GitHub answers."""
        line, start_line = comment.get("line"), comment.get("start_line")
        side = comment.get("side") or "RIGHT"
        start_side = comment.get("start_side") or side
        if "position" in comment and line is None:
            return _unprocessable("Diff positions are not supported by this stand-in: use line and side")
        if not isinstance(comment.get("path"), str):
            return _invalid('"path" wasn\'t supplied.')
        if type(line) is not int or (start_line is not None and type(start_line) is not int):
            return _invalid('For "line" and "start_line", it is not an integer.')
        if side not in ("LEFT", "RIGHT") or start_side not in ("LEFT", "RIGHT"):
            return _invalid('For "side" and "start_side", use "LEFT" or "RIGHT".')
        hunks = self._hunks.get((number, comment["path"]))
        if hunks is None:
            return _unprocessable("Path could not be resolved")
        end = next(((h, i) for h, hunk in enumerate(hunks)
                    if (i := hunk.index(line, side)) is not None), None)
        if end is None:
            return _unprocessable("Line could not be resolved")
        if start_line is not None:
            start = hunks[end[0]].index(start_line, start_side)
            if start is None:
                return _unprocessable(
                    "Pull request review thread start line must be part of the same hunk as the line.")
            if start >= end[1]:
                return _unprocessable("Pull request review thread start line must precede the end line.")
        hunk = hunks[end[0]]
        return {"line": line, "side": side, "start_line": start_line,
                "start_side": start_side if start_line is not None else None,
                "diff_hunk": "\n".join([hunk.header, *hunk.text[:end[1] + 1]])}

    def __repr__(self) -> str:
        return f"<FakeGitHub {self.url} {self.repo} requests={len(self.log)}>"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def fake_github(**options) -> FakeGitHub:
    """A FakeGitHub that ``with`` starts and stops."""
    return FakeGitHub(**options)
