"""The lockfile (`vvstore.lock`): schema, TOML I/O, validation, and drift from the manifest.

TOML in the shape of `pylock.toml`, written only by vvstore, sorted, byte-identical when
nothing changed::

    lock-version = "1"
    created-by = "vvstore 0.1.0"

    [[models]]
    name = "resnet50"
    version = "1.2.0"
    kind = "file"
    digest = "blake3:…"
    size = 102400
    format = "onnx"
    sources = [
        "hf://timm/resnet50@main/model.onnx",
    ]

    [[models.files]]
    path = "model.onnx"
    size = 102400
    hashes = { blake3 = "…", sha256 = "…" }
    sources = [
        "hf://timm/resnet50@<commit>/model.onnx",
    ]

Two kinds of source, so a branch in the manifest does not look like drift:
`models.sources` are the manifest's sources as written (credentials stripped): what was asked
for, compared with the manifest by :func:`diff`, in order (it is the order they are tried).
`models.files.sources` are where each file was found, resolved (an HF commit, never a branch):
what `fetch --locked` downloads from. `hashes.blake3` is bare hex like pylock's sha256; the
model `digest` keeps its prefix. A file model's digest is its one file's; a tree model's is the
digest of the tree document of its files, so the lockfile alone can rebuild it
(:meth:`LockedModel.tree`). Decoding checks all of that and refuses, naming the field, any
unsafe path or name, malformed digest, duplicate, or source that carries a credential.

Drift between this file and the manifest is computed by :mod:`cas.drift`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from .atomic import atomic_write
from .digest import hash_bytes
from .errors import InvalidNameError, LockfileError, ManifestError, NotFoundError
from .manifest import version_key
from .names import validate_name, validate_relpath, validate_version
from .redact import has_credentials, redact_url
from .tomlout import emit_toml
from .tree import DigestStr, Tree, TreeEntry

LOCKFILE_NAME = "vvstore.lock"
LOCK_VERSION = "1"
HexStr = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
Size = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]  # TOML integers are 64-bit
Source = Annotated[str, msgspec.Meta(min_length=1)]


def _created_by() -> str:
    try:
        return f"vvstore {_dist_version('vvstore')}"
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "vvstore"


CREATED_BY = _created_by()


class Hashes(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A file's hashes as bare hex: BLAKE3 always, SHA-256 when a source offered one."""

    blake3: HexStr
    sha256: HexStr | None = None


class LockedFile(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One file of a locked model, with the resolved sources it can be fetched from."""

    path: str
    size: Size
    hashes: Hashes
    sources: list[Source] = msgspec.field(default_factory=list)

    @property
    def digest(self) -> str:
        return f"blake3:{self.hashes.blake3}"


class LockedModel(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One model version pinned to exact digests."""

    name: str
    version: str
    kind: Literal["file", "tree"]
    digest: DigestStr
    size: Size
    format: str | None = None
    sources: list[Source] = msgspec.field(default_factory=list)
    files: list[LockedFile] = msgspec.field(default_factory=list)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def build(
        cls,
        name: str,
        version: str,
        kind: Literal["file", "tree"],
        files: Iterable[LockedFile],
        *,
        format: str | None = None,
        sources: Iterable[str] = (),
    ) -> LockedModel:
        """A model whose digest and size are computed from its files (sorted by path)."""
        files = sorted(files, key=lambda f: f.path)
        if kind == "file" and len(files) != 1:
            raise ValueError(f"a file model has exactly one file, not {len(files)}")
        digest = files[0].digest if kind == "file" else str(hash_bytes(_tree(files).encode()))
        size = sum(f.size for f in files)
        return cls(name, version, kind, digest, size, format, list(sources), files)

    def tree(self) -> Tree:
        """The tree document of the model's files; a tree model's digest is its digest."""
        return _tree(self.files)

    def normalized(self) -> LockedModel:
        """A copy with the files sorted by path."""
        return msgspec.structs.replace(self, files=sorted(self.files, key=lambda f: f.path))


def _tree(files: Iterable[LockedFile]) -> Tree:
    return Tree.from_entries(TreeEntry(f.path, f.digest, f.size) for f in files)


class Lockfile(msgspec.Struct, rename="kebab", forbid_unknown_fields=True):
    """The whole lockfile document; TOML keys are `lock-version` and `created-by`.

    `created-by` is stamped with this vvstore only when `upsert` or `remove` changes
    something, so a run that changes nothing leaves the file byte-identical.
    """

    lock_version: str = LOCK_VERSION
    created_by: str = CREATED_BY
    models: list[LockedModel] = msgspec.field(default_factory=list)

    # --- I/O ---------------------------------------------------------------------------------

    @classmethod
    def loads(cls, data: bytes, file: str = LOCKFILE_NAME) -> Lockfile:
        """Parse and validate lockfile bytes; `file` names it in errors."""
        try:
            raw = msgspec.toml.decode(data)
        except msgspec.DecodeError as e:
            raise LockfileError(file, None, f"not valid TOML: {e}") from None
        found = raw.get("lock-version")
        if found is None:
            raise LockfileError(file, "$.lock-version", "missing: is this a vvstore lockfile?")
        if isinstance(found, str) and found != LOCK_VERSION:
            raise LockfileError(
                file, "$.lock-version", f"unsupported lock-version {found!r}; this vvstore "
                f"reads {LOCK_VERSION!r}", hint="upgrade vvstore",
            )  # fmt: skip
        try:
            lock = msgspec.convert(raw, type=cls)
        except msgspec.ValidationError as e:
            raise field_error(file, e) from None
        _check(lock, file)
        return lock.normalized()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Lockfile:
        """Read a lockfile: :class:`NotFoundError` if absent, :class:`LockfileError` if bad."""
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"no lockfile at {path}", hint="run `vvstore lock`") from None
        except OSError as e:  # unreadable is invalid (exit 3): gc must fail closed on it
            raise LockfileError(os.fspath(path), None, f"cannot read: {e.strerror}") from None
        return cls.loads(data, os.fspath(path))

    @classmethod
    def load_or_empty(cls, path: str | os.PathLike[str]) -> Lockfile:
        """Read a lockfile, or an empty one when the file does not exist."""
        return cls.load(path) if os.path.lexists(path) else cls()

    def dumps(self) -> bytes:
        """Canonical TOML: models sorted by name and version, files by path."""
        lines: list[str] = []
        emit_toml(msgspec.to_builtins(self.normalized()), "", lines)
        return ("\n".join(lines) + "\n").encode()

    def save(self, path: str | os.PathLike[str]) -> bool:
        """Write atomically; unchanged bytes leave the file untouched. True when written."""
        data = self.dumps()
        try:
            if Path(path).read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        atomic_write(path, data)
        return True

    def normalized(self) -> Lockfile:
        """A copy in canonical order."""
        models = sorted((m.normalized() for m in self.models), key=_model_key)
        return msgspec.structs.replace(self, models=models)

    # --- query and update --------------------------------------------------------------------

    def get(self, name: str, version: str | None = None) -> LockedModel | None:
        """The locked `name@version`; without a version, the highest locked. None if absent."""
        found = [m for m in self.models if m.name == name and version in (None, m.version)]
        return max(found, key=_model_key) if found else None

    def upsert(self, model: LockedModel) -> LockedModel | None:
        """Validate and add `model`, replacing its name@version; returns the replaced one."""
        model = model.normalized()
        old = self.get(model.name, model.version)
        models = [m for m in self.models if m is not old] + [model]
        models.sort(key=_model_key)
        _check_model(model, f"$.models[{models.index(model)}]", LOCKFILE_NAME)
        if old != model:
            self.models, self.created_by = models, CREATED_BY
        return old

    def remove(self, name: str, version: str | None = None) -> list[LockedModel]:
        """Drop `name@version` (every version when None); returns what was removed."""
        gone = [m for m in self.models if m.name == name and version in (None, m.version)]
        if gone:
            self.models = [m for m in self.models if all(m is not g for g in gone)]
            self.created_by = CREATED_BY
        return gone

    def referenced_digests(self) -> set[str]:
        """Every digest the lockfile keeps alive: model (file or tree) and file digests."""
        return {m.digest for m in self.models} | {f.digest for m in self.models for f in m.files}


def _model_key(m: LockedModel) -> tuple[Any, ...]:
    return (m.name, version_key(m.version), m.version)


def field_error(
    file: str, e: msgspec.ValidationError, error: type[ManifestError] = LockfileError
) -> ManifestError:
    """A msgspec schema error as `error(file, "$.models[0].size", problem)`.

    msgspec ends its message with `` - at `$.path` ``; a problem at the top has no path.
    """
    problem, sep, where = str(e).rpartition(" - at `")
    if not sep:
        return error(file, "$", str(e))
    return error(file, where.rstrip("`"), problem)


# --- validation ----------------------------------------------------------------------------

_CREDENTIAL_HINT = (
    "remove the credential from the URL; vvstore takes credentials from the environment or "
    "the libraries' own configuration, never from the lockfile"
)


def _check(lock: Lockfile, file: str) -> None:
    seen: set[tuple[str, str]] = set()
    for i, model in enumerate(lock.models):
        _check_model(model, f"$.models[{i}]", file)
        if (model.name, model.version) in seen:
            raise LockfileError(file, f"$.models[{i}]", f"{model.ref} is locked twice")
        seen.add((model.name, model.version))


def _check_model(m: LockedModel, at: str, file: str) -> None:
    _check_value(validate_name, m.name, f"{at}.name", file)
    _check_value(validate_version, m.version, f"{at}.version", file)
    _check_sources(m.sources, f"{at}.sources", file)
    paths: set[str] = set()
    for j, f in enumerate(m.files):
        _check_value(validate_relpath, f.path, f"{at}.files[{j}].path", file)
        if f.path in paths:
            raise LockfileError(file, f"{at}.files[{j}].path", f"{f.path!r} is listed twice")
        paths.add(f.path)
        _check_sources(f.sources, f"{at}.files[{j}].sources", file)
    if m.kind == "file" and len(m.files) != 1:
        raise LockfileError(file, f"{at}.files", f"a file model has one file, not {len(m.files)}")
    size = sum(f.size for f in m.files)
    if m.size != size:
        raise LockfileError(file, f"{at}.size", f"{m.size} is not the sum of its files ({size})")
    digest = m.files[0].digest if m.kind == "file" else str(hash_bytes(_tree(m.files).encode()))
    if m.digest != digest:
        what = "its file's hashes.blake3" if m.kind == "file" else "the tree of its files"
        raise LockfileError(file, f"{at}.digest", f"{m.digest} does not match {what} ({digest})")


def _check_value(check: Any, value: str, at: str, file: str) -> None:
    try:
        check(value)
    except InvalidNameError as e:
        raise LockfileError(file, at, e.message) from None


def _check_sources(sources: list[str], at: str, file: str) -> None:
    for k, source in enumerate(sources):
        if has_credentials(source):
            problem = f"source {redact_url(source)!r} carries a credential"
            raise LockfileError(file, f"{at}[{k}]", problem, hint=_CREDENTIAL_HINT)
