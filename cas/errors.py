"""The vvstore error tree.

Every error vvstore raises on purpose is a :class:`VVStoreError`. Each leaf also subclasses the
builtin a caller would naturally catch, and carries the process exit code the CLI uses::

    VVStoreError (1)
    ├── UsageError (ValueError, 2)
    │   └── InvalidNameError (2)            a model name, version, ref or path refused
    ├── ManifestError (ValueError, 3)       vvstore.yaml / vvstore.json invalid: file and field
    │   ├── LockfileError (3)               vvstore.lock invalid
    │   └── DriftError (3)                  manifest and lockfile disagree (fetch --locked)
    ├── NotFoundError (FileNotFoundError, 4)
    │   ├── ModelNotFoundError (4)          no such model/version in the project
    │   ├── BlobNotFoundError (4)           digest not in the store
    │   └── ProjectNotFoundError (4)        no vvstore.yaml here or above
    ├── IntegrityError (ValueError, 5)      digest or size mismatch
    ├── SourceError (OSError, 6)            a source or remote failed (URL redacted)
    │   └── AllSourcesFailedError (6)       every source failed; reasons listed
    ├── LockTimeoutError (TimeoutError, 7)
    └── StoreFormatError (OSError, 8)       a store of an unknown layout version
"""

from __future__ import annotations


class VVStoreError(Exception):
    """Base of every error vvstore raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(VVStoreError, ValueError):
    """The command or call was given something it cannot use."""

    exit_code = 2


class InvalidNameError(UsageError):
    """A model name, version, ref or relative path was refused before touching the disk."""

    def __init__(self, kind: str, value: str, reason: str) -> None:
        super().__init__(f"invalid {kind} {value!r}: {reason}")
        self.kind = kind
        self.value = value
        self.reason = reason


class ManifestError(VVStoreError, ValueError):
    """The manifest is malformed; names the file and the field path."""

    exit_code = 3

    def __init__(self, file: str, field: str | None, problem: str, *, hint: str | None = None):
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {problem}", hint=hint)
        self.file = file
        self.field = field
        self.problem = problem


class LockfileError(ManifestError):
    """The lockfile is malformed or refers to something it must not."""


class DriftError(ManifestError):
    """The manifest and the lockfile disagree."""


class NotFoundError(VVStoreError, FileNotFoundError):
    """Something asked for does not exist."""

    exit_code = 4


class ModelNotFoundError(NotFoundError):
    """No model of that name (and version) in the project."""


class BlobNotFoundError(NotFoundError):
    """A digest is not present in the store."""

    def __init__(self, digest: str, *, hint: str | None = None) -> None:
        super().__init__(f"blob {digest} is not in the store", hint=hint)
        self.digest = digest


class ProjectNotFoundError(NotFoundError):
    """No vvstore.yaml in the directory or any parent."""


class IntegrityError(VVStoreError, ValueError):
    """Bytes did not match the digest or size they were expected to have."""

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        expected: str | None = None,
        actual: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.expected = expected
        self.actual = actual

    @classmethod
    def mismatch(cls, kind: str, label: str, expected: object, actual: object) -> IntegrityError:
        """`digest mismatch for X: expected A, got B` (kind `size` adds the unit)."""
        unit = " bytes" if kind == "size" else ""
        return cls(
            f"{kind} mismatch{label}: expected {expected}{unit}, got {actual}",
            expected=str(expected),
            actual=str(actual),
        )


class SourceError(VVStoreError, OSError):
    """A source or remote failed; `url` is already redacted."""

    exit_code = 6

    def __init__(
        self,
        url: str,
        reason: str,
        *,
        transient: bool = False,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(f"{url}: {reason}", hint=hint)
        self.url = url
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after


class AllSourcesFailedError(SourceError):
    """Every source of a model failed; each failure is listed."""

    def __init__(self, what: str, failures: list[tuple[str, str]]) -> None:
        lines = "".join(f"\n  - {url}: {reason}" for url, reason in failures)
        VVStoreError.__init__(self, f"could not fetch {what}; every source failed:{lines}")
        self.url = what
        self.reason = "every source failed"
        self.transient = False
        self.retry_after = None
        self.failures = failures


class LockTimeoutError(VVStoreError, TimeoutError):
    """A store lock could not be taken in time."""

    exit_code = 7


class StoreFormatError(VVStoreError, OSError):
    """The store directory has a layout version this vvstore does not know."""

    exit_code = 8
