"""The history on an orphan git branch of the repository itself (default ``lpo-ci-history``).

The branch holds the same folders and JSON-lines files as the local store, a marker file
that says lpo-ci wrote it, a README, and ``.gitattributes`` asking for a union
merge of the files. Commits are made with git's plumbing on a temporary index,
so neither the working tree nor the index of the checkout is touched.

Appends never rewrite: each new commit has the branch's current tip as its
parent (and the local tip too when the two diverged), and pushes are plain
fast-forwards. When another job pushed first, the push is refused as not a
fast-forward: fetch, rebuild the append on the new tip, push again, a bounded
number of times. A push refused for any other reason (branch protection, no
permission) is a warning; the records stay committed on the local branch and
go with the next push from this clone. A branch of that name that lpo-ci did
not create is never touched.
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .store import (ATTRIBUTES, Chunk, HistoryError, Shard, Store, by_key, check_chunk, group_lines,
                    split_chunk)

MARKER = "lpo-ci-history.json"
README = """# Prompt quality history (lpo-ci)

This branch is written by lpo-ci: one folder per prompt template, named
after the template's path, holding one JSON-lines file per month
(`prompts/qa.j2/2026-03.jsonl`), one record per template per evaluated
commit. Read it with `lpo-ci history show --branch` or
`lpo-ci history html dashboard.html --branch`.

Records are only ever appended. Do not rewrite or force-push this branch.
"""
ATTEMPTS = 8
# what a push says when another push got there first (the ref moved, or was being moved)
RACE_LOST = ("fetch first", "non-fast-forward", "failed to update ref", "cannot lock ref", "incorrect old value")
IDENTITY = {"GIT_AUTHOR_NAME": "lpo-ci", "GIT_AUTHOR_EMAIL": "lpo-ci@users.noreply.github.com",
            "GIT_COMMITTER_NAME": "lpo-ci", "GIT_COMMITTER_EMAIL": "lpo-ci@users.noreply.github.com"}


class GitBranchStore(Store):
    def __init__(self, root: Path, branch: str, *, remote: str = "origin", push: bool = False,
                 attempts: int = ATTEMPTS):
        self.root, self.branch, self.remote, self.push, self.attempts = Path(root), branch, remote, push, attempts
        if self._git("rev-parse", "--git-dir", check=False).returncode != 0:
            raise HistoryError(f"the history branch '{branch}' needs a git repository", path=self.root,
                               hint="run inside a git checkout, or keep the history in a folder (--dir)")
        if self._git("check-ref-format", "--branch", branch, check=False).returncode != 0:
            raise HistoryError(f"'{branch}' is not a valid git branch name", hint="name the branch like lpo-ci-history")
        self.local_ref = f"refs/heads/{branch}"
        self.remote_ref = f"refs/remotes/{remote}/{branch}"
        self.description = f"branch {branch}" + (f" (pushed to {remote})" if push else "")

    # --- git plumbing -----------------------------------------------------------------

    def _git(self, *args: str, data: bytes | None = None, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["git", "-C", str(self.root), *args], input=data, capture_output=True,
                              env={**os.environ, **(env or {})})
        if check and done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip() or f"git {args[0]} failed"
            raise HistoryError(f"git {args[0]}: {message}", path=self.root)
        return done

    def _rev(self, ref: str) -> str | None:
        done = self._git("rev-parse", "--verify", "-q", f"{ref}^{{commit}}", check=False)
        return done.stdout.decode().strip() or None if done.returncode == 0 else None

    def _is_ancestor(self, older: str, newer: str) -> bool:
        return self._git("merge-base", "--is-ancestor", older, newer, check=False).returncode == 0

    def _tips(self) -> list[str]:
        """What to build on or read: the newer of the local and remote-tracking tips, or both
        when they diverged."""
        local, remote = self._rev(self.local_ref), self._rev(self.remote_ref)
        if local is None or remote is None or local == remote:
            return [t for t in (remote or local,) if t]
        if self._is_ancestor(local, remote):
            return [remote]
        if self._is_ancestor(remote, local):
            return [local]
        return [remote, local]

    def _check_ours(self, tip: str) -> None:
        done = self._git("cat-file", "blob", f"{tip}:{MARKER}", check=False)
        try:
            ours = done.returncode == 0 and json.loads(done.stdout).get("tool") == "lpo-ci"
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            raise HistoryError(
                f"the branch '{self.branch}' exists but lpo-ci did not create it (no {MARKER} at its root, "
                f"commit {tip[:12]}): refusing to read or write it",
                hint="name another branch for the history (--branch NAME, or history_branch under "
                     "[tool.lpo_ci]), or move that branch out of the way")

    def _blobs(self, shas: list[str]) -> dict[str, bytes]:
        """The blobs ``shas``, in one ``git cat-file``."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        out = self._git("cat-file", "--batch", data="".join(f"{sha}\n" for sha in wanted).encode()).stdout
        found, position = {}, 0
        for sha in wanted:
            end = out.index(b"\n", position)
            header = out[position:end].split()
            position = end + 1
            if len(header) == 3 and header[1] == b"blob":
                size = int(header[2])
                found[sha] = out[position:position + size]
                position += size + 1
        return found

    def _listing(self, tip: str) -> dict[str, str]:
        """The history files at ``tip``: name -> blob id."""
        listed = self._git("ls-tree", "-r", "-z", tip).stdout.decode("utf-8", "replace")
        files = {}
        for entry in listed.split("\x00"):
            meta, _, name = entry.partition("\t")
            parts = meta.split()
            if len(parts) == 3 and parts[1] == "blob" and split_chunk(name):
                files[name] = parts[2]
        return files

    def _listings(self) -> dict[str, list[str]]:
        """Every history file of the tip(s) -> its blob ids (two when diverged tips differ)."""
        files: dict[str, list[str]] = {}
        for tip in self._tips():
            self._check_ours(tip)
            for name, sha in self._listing(tip).items():
                if sha not in files.setdefault(name, []):
                    files[name].append(sha)
        return files

    def _contents(self, shas_by_name: dict[str, list[str]]) -> dict[str, bytes]:
        """Each file's content, both sides' lines where diverged tips differ."""
        blobs = self._blobs([sha for shas in shas_by_name.values() for sha in shas])
        contents = {}
        for name, shas in shas_by_name.items():
            data = blobs[shas[0]]
            for sha in shas[1:]:
                data = union(data, blobs[sha])
            contents[name] = data
        return contents

    # --- reading --------------------------------------------------------------------

    def keys(self) -> list[str]:
        return sorted(by_key(self._listings()))

    def shards(self, keys=None) -> dict[str, Shard]:
        files = self._listings()
        grouped = by_key(files)
        wanted = grouped if keys is None else {k: grouped[k] for k in keys if k in grouped}

        def load(chunks: list[Chunk]) -> None:
            contents = self._contents({c.name: files[c.name] for c in chunks})
            for chunk in chunks:
                chunk.data = contents[chunk.name]

        shards = {key: Shard(key, [Chunk(name, f"{self.branch}:{name}") for name in names], load)
                  for key, names in wanted.items()}
        # the newest and oldest month of every template in one go: what tails and renames read first
        ends = {c.name: c for shard in shards.values() for c in (shard.chunks[0], shard.chunks[-1])}
        load(list(ends.values()))
        return shards

    def _auth(self) -> dict[str, str]:
        """In GitHub Actions, the job's token as an HTTP header for fetch and push, passed in the
        environment (never on a command line or on disk), unless the checkout left one configured."""
        token = os.environ.get("GITHUB_TOKEN")
        if not token or os.environ.get("GITHUB_ACTIONS") != "true":
            return {}
        if self._git("config", "--get-regexp", r"^http\..*\.extraheader$", check=False).stdout.strip():
            return {}
        server = os.environ.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        count = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        return {"GIT_CONFIG_COUNT": str(count + 1), f"GIT_CONFIG_KEY_{count}": f"http.{server}/.extraheader",
                f"GIT_CONFIG_VALUE_{count}": f"AUTHORIZATION: basic {basic}"}

    def exists(self) -> bool:
        return bool(self._tips())

    def fetch(self) -> str | None:
        """Update the remote-tracking ref; a warning when the remote cannot be read (a branch
        that does not exist there yet is not a problem: the first append creates it)."""
        done = self._git("fetch", "--no-tags", "--quiet", self.remote,
                         f"+{self.local_ref}:{self.remote_ref}", env=self._auth(), check=False)
        if done.returncode == 0:
            return None
        message = done.stderr.decode("utf-8", "replace").strip()
        if "couldn't find remote ref" in message or "could not find remote ref" in message:
            return None
        return f"cannot fetch the history branch '{self.branch}' from {self.remote}: {_last_line(message)}"

    # --- writing --------------------------------------------------------------------

    def append(self, records: list[dict[str, Any]]) -> list[str]:
        head = self._git("symbolic-ref", "-q", "HEAD", check=False).stdout.decode().strip()
        if head == self.local_ref:
            raise HistoryError(f"the history branch '{self.branch}' is checked out here",
                               hint="record from a checkout of your code, not of the history branch")
        grouped = group_lines(records)
        if not self.push:
            self._commit(grouped)
            return []
        for attempt in range(1, self.attempts + 1):
            problem = self.fetch()
            if problem:
                self._commit(grouped)
                return [f"{problem}; the records are committed to the local branch only"]
            commit = self._commit(grouped, move_local=False)
            status, reason = self._push(commit)
            if status == "pushed":
                self._git("update-ref", self.remote_ref, commit)
                self._move_local(commit)
                return []
            if status == "refused":
                self._move_local(commit)
                return [f"the history push to {self.remote}/{self.branch} was refused ({reason}): the records "
                        f"are committed to the local branch '{self.branch}' and go with the next push from "
                        "this clone; the verdict is unchanged"]
            time.sleep(random.uniform(0.05, 0.25) * attempt)  # someone else pushed first: rebuild on theirs
        self._commit(grouped)
        return [f"the history push to {self.remote}/{self.branch} lost the race {self.attempts} times: the "
                f"records are committed to the local branch '{self.branch}' only"]

    def _move_local(self, commit: str) -> None:
        old = self._rev(self.local_ref)
        if old is None or self._is_ancestor(old, commit):
            self._git("update-ref", self.local_ref, commit, *([old] if old else []))

    def _commit(self, grouped: dict[str, list[str]], move_local: bool = True) -> str:
        """A commit that appends ``grouped`` lines on top of the current tip(s)."""
        parents = self._tips()
        for tip in parents:
            self._check_ours(tip)
        with tempfile.TemporaryDirectory(prefix="lpo-ci-history-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            if parents:
                self._git("read-tree", parents[0], env=env)
            contents: dict[str, bytes] = {}
            if not parents:
                contents = {MARKER: json.dumps({"tool": "lpo-ci", "format": 1}).encode() + b"\n",
                            "README.md": README.encode(), ".gitattributes": ATTRIBUTES.encode()}
            # the files appended to, and where tips diverged every file that differs: both sides' lines
            files = self._listings()
            changed = list(files) if len(parents) > 1 else [n for n in grouped if n in files]
            old = self._contents({n: files[n] for n in changed})
            contents.update(old)
            for name, lines in grouped.items():
                check_chunk(name)
                contents[name] = union(old.get(name, b""), "".join(line + "\n" for line in lines).encode("utf-8"))
            paths = []
            for index, data in enumerate(contents.values()):
                path = Path(scratch) / f"blob{index}"
                path.write_bytes(data)
                paths.append(str(path))
            shas = self._git("hash-object", "-w", "--stdin-paths", data="\n".join(paths).encode()).stdout.split()
            entries = b"".join(b"100644 blob " + sha + b"\t" + name.encode("utf-8") + b"\x00"
                               for sha, name in zip(shas, contents))
            self._git("update-index", "-z", "--add", "--index-info", data=entries, env=env)
            tree = self._git("write-tree", env=env).stdout.decode().strip()
        count = sum(map(len, grouped.values()))
        message = f"Record {count} result{'s' * (count != 1)} of {len(grouped)} template{'s' * (len(grouped) != 1)}"
        args = ["commit-tree", tree, "-m", message]
        for parent in parents:
            args += ["-p", parent]
        commit = self._git(*args, env=self._identity()).stdout.decode().strip()
        if move_local:
            self._move_local(commit)
        return commit

    def _identity(self) -> dict[str, str]:
        """Who commits: the user's git identity, else lpo-ci's (a CI runner often has none)."""
        configured = self._git("config", "user.email", check=False).stdout.strip()
        return {} if configured else IDENTITY

    def _push(self, commit: str) -> tuple[str, str]:
        """("pushed" | "behind" | "refused", reason)."""
        done = self._git("push", "--porcelain", "--quiet", self.remote, f"{commit}:{self.local_ref}",
                         env=self._auth(), check=False)
        if done.returncode == 0:
            return "pushed", ""
        text = (done.stdout + done.stderr).decode("utf-8", "replace")
        if any(sign in text for sign in RACE_LOST):
            return "behind", ""
        if "[remote rejected]" in text:
            reason = text.split("[remote rejected]", 1)[1].strip().splitlines()[0].strip(" ()")
            return "refused", reason or "rejected by the remote"
        return "refused", _last_line(text) or "git push failed"


def union(old: bytes, new: bytes) -> bytes:
    """``old`` exactly as it is (it is never rewritten), then the lines of ``new`` it lacks."""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    seen = set(old.split(b"\n"))
    added = []
    for line in new.split(b"\n"):
        if line.strip() and line not in seen:
            seen.add(line)
            added.append(line + b"\n")
    return old + b"".join(added)


def _last_line(text: str) -> str:
    """What git said went wrong: its first fatal or error line, else its last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    told = [line for line in lines if line.startswith(("fatal:", "error:", "remote: error"))]
    return (told or lines or [""])[0 if told else -1]
