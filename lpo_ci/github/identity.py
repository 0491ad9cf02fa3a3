"""Who is posting: our own comments are the ones this token's account wrote.

A marker alone proves nothing (anyone can paste it, and a maintainer's token
may edit anyone's comment), and "a bot wrote it" fails for a personal access
token, whose comments are a user's. So the account is asked for:
``GET /user`` answers a user token (PAT, OAuth); installation tokens (the
workflow's ``GITHUB_TOKEN``, a GitHub App's) are refused there, and the
GraphQL ``viewer`` answers them with the bot account (``github-actions[bot]``,
``<app>[bot]``). If neither answers, any bot account may be us, and GitHub's
own refusal to let us edit another's comment is the last check.
"""

from __future__ import annotations

from dataclasses import dataclass

from .api import GitHubAPI, GitHubError


@dataclass(frozen=True)
class Identity:
    login: str | None  # None: not known
    how: str           # "GET /user", "GraphQL viewer" or "assumed a bot account"

    def owns(self, item: dict) -> bool:
        """Whether a comment or review (a dict with ``user``) was written by this account."""
        user = item.get("user") if isinstance(item, dict) else None
        if not isinstance(user, dict):
            return False
        if self.login is None:
            return user.get("type") == "Bot"
        return str(user.get("login", "")).lower() == self.login.lower()


def whoami(api: GitHubAPI) -> Identity:
    """The token's account; never fails (an unknown account falls back to any bot)."""
    try:
        user = api.request("GET", "/user").data
        if isinstance(user, dict) and isinstance(user.get("login"), str):
            return Identity(user["login"], "GET /user")
    except GitHubError:
        pass  # an installation token, or /user is blocked: ask GraphQL
    try:
        viewer = (api.graphql("query { viewer { login databaseId } }") or {}).get("viewer") or {}
        if isinstance(viewer.get("login"), str):
            return Identity(viewer["login"], "GraphQL viewer")
    except GitHubError:
        pass
    return Identity(None, "assumed a bot account")
