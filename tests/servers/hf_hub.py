"""A minimal Hugging Face Hub-compatible endpoint on 127.0.0.1 for huggingface_hub clients.

Serves what ``HfApi.model_info``/``dataset_info``, ``list_repo_tree``, ``get_paths_info``,
``hf_hub_download``, ``snapshot_download`` and ``HfFileSystem`` call: repo info, the
paginated tree, paths-info and ``/resolve`` with ranges. Repo ids are ``namespace/name``;
revisions are branches, tags and full commit shas. Each commit is a full snapshot.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from .http_server import BackgroundHTTPServer, QuietHandler, RangeNotSatisfiable, parse_range

__all__ = ["FakeHub"]

_API = re.compile(
    r"^/api/(models|datasets)/([^/]+/[^/]+)(?:/(revision|tree|paths-info)/([^/]+)(/.*)?)?/?$"
)
_RESOLVE = re.compile(r"^/(?:(datasets)/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class _Blob:
    data: bytes
    lfs: bool
    oid: str  # git blob sha1 (of the LFS pointer for LFS files)
    sha256: str
    pointer_size: int

    @classmethod
    def make(cls, data: bytes, lfs: bool) -> _Blob:
        sha256 = hashlib.sha256(data).hexdigest()
        pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
                   f"size {len(data)}\n").encode()
        stored = pointer if lfs else data
        oid = hashlib.sha1(b"blob %d\0" % len(stored) + stored).hexdigest()
        return cls(data, lfs, oid, sha256, len(pointer))


@dataclass(frozen=True)
class _Commit:
    sha: str
    files: dict[str, _Blob]
    message: str
    date: str


@dataclass
class _Repo:
    commits: dict[str, _Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> _Commit | None:
        sha = self.branches.get(revision) or self.tags.get(revision) or revision
        return self.commits.get(sha)


def _flag(values: list[str] | None) -> bool:
    """A boolean query/form parameter (``true``/``1``)."""
    return bool(values and values[0].lower() in ("1", "true"))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _dirs(files: dict[str, _Blob]) -> dict[str, str]:
    """Every directory of ``files`` with a tree oid (sha1 of the listing below it)."""
    listing: dict[str, list[str]] = {}
    for path, blob in sorted(files.items()):
        for i in range(1, path.count("/") + 1):
            listing.setdefault(path.rsplit("/", i)[0], []).append(f"{path} {blob.oid}\n")
    return {d: hashlib.sha1("".join(lines).encode()).hexdigest() for d, lines in listing.items()}


def _file_entry(commit: _Commit, path: str, expand: bool) -> dict[str, object]:
    blob = commit.files[path]
    entry: dict[str, object] = {"type": "file", "oid": blob.oid, "size": len(blob.data),
                                "path": path}
    if blob.lfs:
        entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data),
                        "pointerSize": blob.pointer_size}
    if expand:
        entry["lastCommit"] = {"id": commit.sha, "title": commit.message, "date": commit.date}
    return entry


def _dir_entry(commit: _Commit, path: str, oid: str, expand: bool) -> dict[str, object]:
    entry: dict[str, object] = {"type": "directory", "path": path, "oid": oid}
    if expand:
        entry["lastCommit"] = {"id": commit.sha, "title": commit.message, "date": commit.date}
    return entry


def _entry(commit: _Commit, path: str, expand: bool) -> dict[str, object] | None:
    if path in commit.files:
        return _file_entry(commit, path, expand)
    if (oid := _dirs(commit.files).get(path)) is not None:
        return _dir_entry(commit, path, oid, expand)
    return None


def _tree(
    commit: _Commit, base: str, recursive: bool, expand: bool
) -> list[dict[str, object]] | None:
    """Entries under ``base`` (dirs first), ``[file]`` for a file path, None if missing."""
    if base in commit.files:
        return [_file_entry(commit, base, expand)]
    dirs = _dirs(commit.files)
    if base and base not in dirs:
        return None
    prefix = base + "/" if base else ""

    def wanted(p: str) -> bool:
        return p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])

    return ([_dir_entry(commit, d, oid, expand) for d, oid in sorted(dirs.items()) if wanted(d)]
            + [_file_entry(commit, f, expand) for f in sorted(commit.files) if wanted(f)])


class _HubHandler(QuietHandler):
    server: FakeHub

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib naming
        self._route()

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._route()

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._route()

    def _json(self, payload: object, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(200, json.dumps(payload).encode(),
                        {"Content-Type": "application/json", **(headers or {})})

    def _error(self, code: int, error_code: str | None, message: str,
               headers: dict[str, str] | None = None) -> None:
        extra = {"X-Error-Code": error_code} if error_code else {}
        self.send_bytes(code, json.dumps({"error": message}).encode(),
                        {"Content-Type": "application/json", "X-Error-Message": message,
                         **extra, **(headers or {})})

    def _route(self) -> None:
        hub = self.server
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hub.record(self.command, unquote(url.path))
        injected = hub.take_failure(unquote(url.path))
        if injected is not None:
            return self._error(injected, None, f"injected {injected}")
        query = parse_qs(url.query)
        if (m := _API.match(url.path)) and self.command in ("GET", "POST"):
            kind, repo_id, op, rev, rest = m.groups()
            self._api(kind[:-1], repo_id, op, unquote(rev or "main"), unquote(rest or ""),
                      query, body)
        elif (m := _RESOLVE.match(url.path)) and self.command in ("GET", "HEAD"):
            kind, repo_id, rev, path = m.groups()
            self._resolve(kind[:-1] if kind else "model", repo_id, unquote(rev), unquote(path))
        else:
            self._error(404, None, "Not Found")

    def _lookup(self, repo_type: str, repo_id: str, rev: str) -> _Commit | None:
        repo, commit = self.server.lookup(repo_type, repo_id, rev)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
        elif commit is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return commit

    def _api(self, repo_type: str, repo_id: str, op: str | None, rev: str, path: str,
             query: dict[str, list[str]], body: bytes) -> None:
        if (op == "paths-info") != (self.command == "POST"):
            return self._error(405, None, "Method Not Allowed")
        if (commit := self._lookup(repo_type, repo_id, rev)) is None:
            return None
        if op is None or op == "revision":
            info = self.server.info(repo_type, repo_id, commit, _flag(query.get("blobs")))
            return self._json(info)
        if op == "paths-info":
            if self.headers.get("Content-Type", "").startswith("application/json"):
                form = json.loads(body or b"{}")
                paths, expand = form.get("paths", []), bool(form.get("expand"))
            else:
                form = parse_qs(body.decode())
                paths, expand = form.get("paths", []), _flag(form.get("expand"))
            paths = [paths] if isinstance(paths, str) else paths
            found = [_entry(commit, p.strip("/"), expand) for p in paths]
            return self._json([e for e in found if e is not None])
        key = (commit.sha, path.strip("/"), _flag(query.get("recursive")),
               _flag(query.get("expand")))
        if (entries := self.server.tree_cache.get(key)) is None:
            entries = self.server.tree_cache[key] = _tree(commit, *key[1:])
        if entries is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {rev}",
                               {"X-Repo-Commit": commit.sha})
        cursor = int((query.get("cursor") or ["0"])[0])
        page = self.server.tree_page_size
        headers = {}
        if cursor + page < len(entries):
            next_query = {k: v[0] for k, v in query.items()} | {"cursor": str(cursor + page)}
            next_url = f"{self.server.endpoint}{urlsplit(self.path).path}?{urlencode(next_query)}"
            headers["Link"] = f'<{next_url}>; rel="next"'
        return self._json(entries[cursor : cursor + page], headers)

    def _resolve(self, repo_type: str, repo_id: str, rev: str, path: str) -> None:
        if (commit := self._lookup(repo_type, repo_id, rev)) is None:
            return
        blob = commit.files.get(path)
        if blob is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {rev}",
                               {"X-Repo-Commit": commit.sha})
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                   "X-Repo-Commit": commit.sha,
                   "ETag": f'"{blob.sha256 if blob.lfs else blob.oid}"'}
        if blob.lfs:
            headers |= {"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(len(blob.data))}
        code, data = 200, blob.data
        try:
            span = parse_range(self.headers.get("Range"), len(data))
        except RangeNotSatisfiable:
            return self._error(416, None, "Range Not Satisfiable",
                               {"Content-Range": f"bytes */{len(data)}"})
        if span is not None:
            code, data = 206, data[span[0] : span[1]]
            headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{len(blob.data)}"
        self.send_bytes(code, data, headers)


class FakeHub(BackgroundHTTPServer):
    """In-memory Hub: ``add_repo``, ``commit`` full snapshots, ``tag``; ``fail_next`` faults.

    Files larger than ``lfs_threshold`` bytes are LFS files unless ``commit(lfs_paths=...)``
    says otherwise. The tree endpoint pages every ``tree_page_size`` entries (Link header).
    ``requests`` records ``(method, unquoted path)`` of every request.
    """

    def __init__(self, *, lfs_threshold: int = 1024, tree_page_size: int = 1000) -> None:
        super().__init__(_HubHandler)
        self.lfs_threshold = lfs_threshold
        self.tree_page_size = tree_page_size
        self.requests: list[tuple[str, str]] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._failures: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._counter = 0
        self.tree_cache: dict[tuple[str, str, bool, bool], list[dict[str, object]] | None] = {}

    @property
    def endpoint(self) -> str:
        """Value for ``endpoint=`` / ``HF_ENDPOINT``."""
        return self.base_url

    def add_repo(self, repo_id: str, *, repo_type: str = "model") -> str:
        """Create a repo with an empty initial commit on ``main``; returns that commit's sha."""
        with self._lock:
            if (repo_type, repo_id) not in self._repos:
                self._repos[(repo_type, repo_id)] = _Repo()
        return self.commit(repo_id, {}, message="initial commit", repo_type=repo_type)

    def commit(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main",
               lfs_paths: set[str] | None = None, message: str = "update",
               repo_type: str = "model") -> str:
        """Make ``files`` the full content of ``branch`` (creating repo/branch as needed).

        ``lfs_paths``: the exact set of LFS files; None means "larger than lfs_threshold".
        Returns the new commit sha (40 hex).
        """
        blobs = {p.strip("/"): _Blob.make(data, len(data) > self.lfs_threshold
                                          if lfs_paths is None else p in lfs_paths)
                 for p, data in files.items()}
        with self._lock:
            repo = self._repos.setdefault((repo_type, repo_id), _Repo())
            self._counter += 1
            seed = f"{repo_type}/{repo_id}\n{branch}\n{self._counter}\n{message}\n"
            seed += "".join(f"{p} {b.oid}\n" for p, b in sorted(blobs.items()))
            sha = hashlib.sha1(seed.encode()).hexdigest()
            repo.commits[sha] = _Commit(sha, blobs, message, _now())
            repo.branches[branch] = sha
        return sha

    def tag(self, repo_id: str, tag: str, revision: str, *, repo_type: str = "model") -> None:
        """Point ``tag`` at ``revision`` (a branch, tag or commit sha)."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            commit = repo.resolve(revision)
            if commit is None:
                raise KeyError(f"unknown revision {revision!r} of {repo_id}")
            repo.tags[tag] = commit.sha

    def fail_next(self, path_substring: str, status: int, *, times: int = 1) -> None:
        """Answer the next ``times`` requests whose unquoted path contains ``path_substring``
        with ``status`` (no X-Error-Code)."""
        with self._lock:
            self._failures.extend([(path_substring, status)] * times)

    def take_failure(self, path: str) -> int | None:
        """Pop and return the status of the first queued failure matching ``path``."""
        with self._lock:
            for i, (needle, status) in enumerate(self._failures):
                if needle in path:
                    del self._failures[i]
                    return status
        return None

    def record(self, method: str, path: str) -> None:
        """Append to ``requests``."""
        with self._lock:
            self.requests.append((method, path))

    def lookup(self, repo_type: str, repo_id: str, rev: str) -> tuple[_Repo | None, _Commit | None]:
        """The repo and the commit ``rev`` resolves to (either may be None)."""
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
            return repo, repo.resolve(rev) if repo is not None else None

    def info(self, repo_type: str, repo_id: str, commit: _Commit, blobs: bool) -> dict[str, object]:
        """The ``/api/{models,datasets}/{repo}[/revision/{rev}]`` JSON."""
        siblings: list[dict[str, object]] = []
        for path, blob in sorted(commit.files.items()):
            sib: dict[str, object] = {"rfilename": path}
            if blobs:
                sib |= {"size": len(blob.data), "blobId": blob.oid}
                if blob.lfs:
                    sib["lfs"] = {"sha256": blob.sha256, "size": len(blob.data),
                                  "pointerSize": blob.pointer_size}
            siblings.append(sib)
        info: dict[str, object] = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id,
            "author": repo_id.split("/")[0], "sha": commit.sha, "lastModified": commit.date,
            "private": False, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
            "tags": [], "siblings": siblings,
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        return info
