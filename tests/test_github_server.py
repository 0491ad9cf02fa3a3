"""The GitHub stand-in enforces the rules the PR publisher depends on, over real HTTP.

If these drift from GitHub's behaviour, publisher tests pass against a server
that real GitHub would contradict, so each rule is pinned here.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

import pytest

from tests.support.github_server import MAX_BODY, FakeGitHub, fake_github

HEAD = "c0ffee" + "0" * 34
REPO = "/repos/octo/prompts"
# Two hunks. New-file (RIGHT) lines: 1-4 in the first, 20-21 in the second.
# Old-file line 22 ("-m") exists only on the LEFT side.
PATCH = "\n".join([
    "@@ -1,3 +1,4 @@",
    " a",            # old 1, new 1
    "-b",            # old 2
    "+B",            # new 2
    "+C",            # new 3
    " d",            # old 3, new 4
    "@@ -20,4 +20,2 @@ section",
    " j",            # old 20, new 20
    "-k",            # old 21
    "-m",            # old 22
    " l",            # old 23, new 21
])
FILES = [{"filename": "prompts/qa.txt", "patch": PATCH, "status": "modified"}]


def call(gh: FakeGitHub, method: str, path: str, body=None, *, auth: str | None = "Bearer",
         raw: bytes | None = None):
    """(status, lower-cased headers, decoded JSON or text) for one request; path may be a full URL."""
    url = path if path.startswith("http") else gh.url + path
    headers = {"Accept": "application/vnd.github+json"}
    if auth:
        headers["Authorization"] = f"{auth} {gh.token}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode("utf-8"))
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, answer_headers, content = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, content = error.code, error.headers, error.read()
    headers = {key.lower(): value for key, value in answer_headers.items()}
    text = content.decode("utf-8")
    return status, headers, json.loads(text) if "json" in headers.get("content-type", "") and text else text


@pytest.fixture
def gh():
    with fake_github() as server:
        server.add_pull(7, head_sha=HEAD, files=FILES)
        yield server


def review(gh: FakeGitHub, *comments: dict, commit_id: str = HEAD):
    return call(gh, "POST", f"{REPO}/pulls/7/reviews",
                {"commit_id": commit_id, "body": "LPO report", "event": "COMMENT", "comments": list(comments)})


def note(line: int, **extra) -> dict:
    return {"path": "prompts/qa.txt", "line": line, "side": "RIGHT", "body": f"on {line}", **extra}


def test_requests_without_the_token_get_401(gh):
    assert call(gh, "GET", f"{REPO}/pulls/7", auth=None)[0] == 401
    status, headers, data = call(gh, "GET", f"{REPO}/pulls/7", auth="Bearer wrong")
    assert (status, data["message"]) == (401, "Bad credentials")
    assert headers["content-type"] == "application/json; charset=utf-8"
    # both accepted schemes work
    assert call(gh, "GET", f"{REPO}/pulls/7", auth="token")[0] == 200
    status, _, pull = call(gh, "GET", f"{REPO}/pulls/7")
    assert pull["head"] == {"sha": HEAD, "ref": "feature"} and pull["base"]["ref"] == "main"
    assert [entry[2] for entry in gh.log] == [401, 401, 200, 200]


def test_create_list_and_edit_own_comment(gh):
    seeded = gh.add_issue_comment(7, "first!")
    status, headers, created = call(gh, "POST", f"{REPO}/issues/7/comments", {"body": "<!-- lpo-ci --> v1"})
    assert status == 201 and headers["location"].endswith(f"/issues/comments/{created['id']}")
    assert created["user"] == {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}

    status, _, listed = call(gh, "GET", f"{REPO}/issues/7/comments")
    assert status == 200 and [c["id"] for c in listed] == [seeded["id"], created["id"]]  # oldest first

    status, _, edited = call(gh, "PATCH", f"{REPO}/issues/comments/{created['id']}",
                             {"body": "<!-- lpo-ci --> v2"})
    assert status == 200 and edited["body"] == "<!-- lpo-ci --> v2"
    assert edited["updated_at"] > edited["created_at"] == created["created_at"]
    assert gh.issue_comments[7][1]["body"] == "<!-- lpo-ci --> v2"
    assert call(gh, "PATCH", f"{REPO}/issues/comments/999", {"body": "x"})[0] == 404


def test_editing_another_users_comment_is_forbidden(gh):
    theirs = gh.add_issue_comment(7, "<!-- lpo-ci --> quoted by a human", login="octocat")
    status, headers, data = call(gh, "PATCH", f"{REPO}/issues/comments/{theirs['id']}", {"body": "mine now"})
    assert (status, data["message"]) == (403, "Resource not accessible by integration")
    assert headers["x-ratelimit-remaining"] != "0"   # a permission error, not a rate limit to wait out
    assert gh.issue_comments[7][0]["body"] == "<!-- lpo-ci --> quoted by a human"


def test_pagination_follows_github_link_headers(gh):
    seeded = [gh.add_issue_comment(7, f"c{i}")["id"] for i in range(250)]
    url, ids, links = f"{gh.url}{REPO}/issues/7/comments?per_page=100", [], []
    while url:
        status, headers, items = call(gh, "GET", url)
        assert status == 200
        ids += [c["id"] for c in items]
        links.append(headers.get("link", ""))
        url = (re.search(r'<([^>]+)>; rel="next"', links[-1]) or [None, None])[1]
    assert ids == seeded and len(links) == 3   # every comment once, oldest first, in 3 pages
    base = f"{gh.url}{REPO}/issues/7/comments?per_page=100"
    assert f'<{base}&page=2>; rel="next"' in links[0] and f'<{base}&page=3>; rel="last"' in links[0]
    assert f'<{base}&page=3>; rel="next"' in links[1]
    assert 'rel="next"' not in links[2] and f'<{base}&page=2>; rel="prev"' in links[2]
    # default page size 30, per_page capped at per_page_max, past the end: empty
    assert len(call(gh, "GET", f"{REPO}/issues/7/comments")[2]) == 30
    assert len(call(gh, "GET", f"{REPO}/issues/7/comments?per_page=1000")[2]) == 100
    assert call(gh, "GET", f"{REPO}/issues/7/comments?per_page=100&page=4")[2] == []


def test_review_on_diff_lines_is_stored(gh):
    status, _, created = review(gh, note(3), note(4), note(21), note(22, side="LEFT"))
    assert status == 200 and created["state"] == "COMMENTED" and created["commit_id"] == HEAD
    assert [(c["line"], c["side"]) for c in gh.review_comments[7]] == [(3, "RIGHT"), (4, "RIGHT"),
                                                                     (21, "RIGHT"), (22, "LEFT")]
    assert {c["pull_request_review_id"] for c in gh.review_comments[7]} == {created["id"]}
    status, _, listed = call(gh, "GET", f"{REPO}/pulls/7/comments")
    assert status == 200 and [c["body"] for c in listed] == ["on 3", "on 4", "on 21", "on 22"]
    assert listed[0]["diff_hunk"] == "@@ -1,3 +1,4 @@\n a\n-b\n+B\n+C"


@pytest.mark.parametrize("comment, commit_id, reason", [
    (note(10), HEAD, "Line could not be resolved"),             # between the hunks
    (note(22), HEAD, "Line could not be resolved"),             # a deleted line's number: not on the RIGHT
    ({**note(3), "path": "prompts/other.txt"}, HEAD, "Path could not be resolved"),
    (note(3), "f" * 40, "Commit could not be resolved"),        # not the PR's head
], ids=["outside-hunk", "deleted-line", "unknown-path", "stale-commit"])
def test_review_off_the_diff_is_rejected_whole(gh, comment, commit_id, reason):
    status, _, data = review(gh, note(2), comment, commit_id=commit_id)
    assert status == 422 and data["message"] == "Unprocessable Entity" and data["errors"][0].startswith(reason)
    assert gh.reviews[7] == [] and gh.review_comments[7] == []   # the valid comment was not kept either


def test_multi_line_comments_stay_within_one_hunk(gh):
    status, _, _ = review(gh, note(4, start_line=2, start_side="RIGHT"))
    assert status == 200
    assert (gh.review_comments[7][0]["start_line"], gh.review_comments[7][0]["line"]) == (2, 4)
    status, _, data = review(gh, note(20, start_line=3))
    assert status == 422 and "same hunk" in data["errors"][0]
    status, _, data = review(gh, note(3, start_line=3))        # GitHub wants start_line < line
    assert status == 422 and "precede" in data["errors"][0]
    assert len(gh.review_comments[7]) == 1


def test_bodies_over_65536_characters_are_rejected(gh):
    status, _, data = call(gh, "POST", f"{REPO}/issues/7/comments", {"body": "x" * (MAX_BODY + 1)})
    assert status == 422 and data["message"] == "Validation Failed"
    assert data["errors"][0]["message"] == "body is too long (maximum is 65536 characters)"
    assert call(gh, "POST", f"{REPO}/issues/7/comments", {"body": "x" * MAX_BODY})[0] == 201
    assert review(gh, note(3, body="y" * (MAX_BODY + 1)))[0] == 422
    assert len(gh.issue_comments[7]) == 1 and gh.reviews[7] == []


def test_faults_rotate_and_change_nothing():
    with fake_github(fault_every=2, faults=(502, 429, 403), retry_after="3") as gh:
        gh.add_pull(7, head_sha=HEAD, files=FILES)
        answers = [call(gh, "POST", f"{REPO}/issues/7/comments", {"body": f"try {i}"}) for i in range(6)]
        assert [status for status, _, _ in answers] == [201, 502, 201, 429, 201, 403]
        assert answers[1][1]["content-type"].startswith("text/html")
        assert answers[3][1]["retry-after"] == "3"
        limited = answers[5][1]
        assert limited["x-ratelimit-remaining"] == "0" and limited["retry-after"] == "3"
        assert 0 <= int(limited["x-ratelimit-reset"]) - time.time() <= 2
        assert answers[5][2]["message"] == "API rate limit exceeded for installation."
        assert [c["body"] for c in gh.issue_comments[7]] == ["try 0", "try 2", "try 4"]
        assert call(gh, "GET", f"{REPO}/pulls/7", auth=None)[0] == 401   # unauthenticated: not counted
        assert call(gh, "GET", f"{REPO}/pulls/7")[0] == 200              # 7th authenticated request


def test_fail_always_routes_and_protocol_errors():
    with fake_github(fail_always={("POST", r".*/reviews$"): 500, ("PATCH", ".*"): 403}) as gh:
        gh.add_pull(7, head_sha=HEAD, files=FILES)
        for _ in range(2):
            status, _, data = review(gh, note(3))
            assert (status, data["message"]) == (500, "Internal Server Error")
        created = call(gh, "POST", f"{REPO}/issues/7/comments", {"body": "ok"})[2]
        assert call(gh, "PATCH", f"{REPO}/issues/comments/{created['id']}", {"body": "no"})[0] == 403
        assert gh.reviews[7] == [] and gh.issue_comments[7][0]["body"] == "ok"

        assert call(gh, "GET", "/repos/someone/else/pulls/7")[2] == {
            "message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}
        assert call(gh, "GET", f"{REPO}/pulls/7/commits")[0] == 404
        status, _, data = call(gh, "POST", f"{REPO}/issues/7/comments", raw=b"{not json")
        assert (status, data["message"]) == (400, "Problems parsing JSON")
        assert gh.log[-1] == ("POST", f"{REPO}/issues/7/comments", 400)


def test_contents_serves_a_file_at_the_head_commit_in_base64():
    import base64

    with fake_github() as gh:
        gh.add_pull(3, head_sha="c" * 40, files=[{"filename": "prompts/a b.j2", "patch": "@@ -1 +1 @@\n-a\n+b",
                                                  "content": "b\n"}])
        status, _, data = call(gh, "GET", f"/repos/{gh.repo}/contents/prompts/a%20b.j2?ref={'c' * 40}")
        assert status == 200 and base64.b64decode(data["content"]) == b"b\n"
        status, _, _ = call(gh, "GET", f"/repos/{gh.repo}/contents/prompts/a%20b.j2?ref={'d' * 40}")
        assert status == 404


def test_token_kinds_answer_user_and_viewer_as_github_does():
    from tests.support.github_server import Identity

    tokens = {"ghp_pat": Identity("release-robot", "pat"), "ghs_app": Identity("lpo-app[bot]", "app")}
    with fake_github(tokens=tokens) as gh:
        gh.add_pull(7, head_sha=HEAD, files=FILES)
        answers = {}
        for token in (gh.token, "ghp_pat", "ghs_app"):
            gh.token = token  # call() sends gh.token
            answers[token] = (call(gh, "GET", "/user"),
                              call(gh, "POST", "/graphql", {"query": "query { viewer { login databaseId } }"}),
                              call(gh, "POST", f"{REPO}/issues/7/comments", {"body": f"by {token}"}))
        for token in ("ghs_test_token", "ghs_app"):  # installation tokens: refused, as on GitHub
            status, _, data = answers[token][0]
            assert (status, data["message"]) == (403, "Resource not accessible by integration")
        status, _, user = answers["ghp_pat"][0]
        assert status == 200 and (user["login"], user["type"]) == ("release-robot", "User")
        logins = {token: answer[1][2]["data"]["viewer"]["login"] for token, answer in answers.items()}
        assert logins == {"ghs_test_token": "github-actions[bot]", "ghp_pat": "release-robot",
                          "ghs_app": "lpo-app[bot]"}
        authors = [(c["user"]["login"], c["user"]["type"]) for c in gh.issue_comments[7]]
        assert authors == [("github-actions[bot]", "Bot"), ("release-robot", "User"), ("lpo-app[bot]", "Bot")]


def test_who_may_edit_or_delete_a_comment():
    from tests.support.github_server import Identity

    tokens = {"ghp_maintainer": Identity("maintainer", "pat", maintainer=True)}
    with fake_github(tokens=tokens) as gh:
        gh.add_pull(7, head_sha=HEAD, files=FILES)
        theirs = gh.add_issue_comment(7, "a human's comment", login="octocat")
        assert call(gh, "DELETE", f"{REPO}/issues/comments/{theirs['id']}")[0] == 403   # the bot may not
        gh.token = "ghp_maintainer"                                                    # write access may
        assert call(gh, "PATCH", f"{REPO}/issues/comments/{theirs['id']}", {"body": "edited"})[0] == 200
        assert call(gh, "DELETE", f"{REPO}/issues/comments/{theirs['id']}")[0] == 204
        assert gh.issue_comments[7] == []
        assert call(gh, "DELETE", f"{REPO}/issues/comments/{theirs['id']}")[0] == 404


def test_injected_faults_answer_once_and_may_come_after_the_write():
    with fake_github() as gh:
        gh.add_pull(7, head_sha=HEAD, files=FILES)
        gh.inject("POST", r"/issues/7/comments$", 502, after_write=True)
        gh.inject("POST", r"/issues/7/comments$", 422)
        status, headers, _ = call(gh, "POST", f"{REPO}/issues/7/comments", {"body": "one"})
        assert status == 502 and headers["content-type"].startswith("text/html")
        assert [c["body"] for c in gh.issue_comments[7]] == ["one"]              # it landed all the same
        assert call(gh, "POST", f"{REPO}/issues/7/comments", {"body": "two"})[0] == 422
        assert call(gh, "POST", f"{REPO}/issues/7/comments", {"body": "three"})[0] == 201
        assert [c["body"] for c in gh.issue_comments[7]] == ["one", "three"]
