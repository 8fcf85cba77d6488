"""Validation of model names, versions, refs and relative paths. Pure: no disk access.

Everything here treats its input as untrusted data. A value is refused with
:class:`InvalidNameError` (exit 2) that quotes it and says why.

Example:
    >>> validate_relpath("onnx/model.onnx")
    'onnx/model.onnx'
    >>> parse_ref("acme/tiny@1.0/config.json")
    Ref(name='acme/tiny', version='1.0', path='config.json', digest=None)
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from .digest import Digest
from .errors import InvalidNameError

MAX_NAME = 200
MAX_SEGMENT = 255
MAX_PATH = 4096
MAX_VERSION = 128
_NAME_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]*")
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class Ref:
    """A parsed ref: a model (`name`, optional `version`) or a bare `digest`, plus a file path."""

    name: str | None
    version: str | None
    path: str | None
    digest: Digest | None = None

    def __str__(self) -> str:
        head = str(self.digest) if self.digest else self.name or ""
        if self.version:
            head += f"@{self.version}"
        return f"{head}/{self.path}" if self.path else head


def _has_control(value: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in value)


def validate_name(name: str) -> str:
    """A model name: `/`-separated segments of letters, digits, `.`, `_`, `-`, as on the HF Hub."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError("model name", str(name), "it is empty")
    if len(name) > MAX_NAME:
        raise InvalidNameError("model name", name, f"longer than {MAX_NAME} characters")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidNameError("model name", name, "empty, '.' or '..' segment")
        if not _NAME_SEGMENT.fullmatch(segment):
            raise InvalidNameError(
                "model name",
                name,
                "use letters, digits, '.', '_', '-' (and '/' between parts), starting each part "
                "with a letter or digit",
            )
    return name


def validate_version(version: str) -> str:
    """A version: letters, digits and `._+!-`, starting with a letter or digit; no `/` or `@`."""
    if not isinstance(version, str) or not version:
        raise InvalidNameError("version", str(version), "it is empty")
    if len(version) > MAX_VERSION:
        raise InvalidNameError("version", version, f"longer than {MAX_VERSION} characters")
    if not _VERSION.fullmatch(version):
        raise InvalidNameError(
            "version", version, "use letters, digits and '._+!-', starting with a letter or digit"
        )
    return version


def validate_relpath(path: str) -> str:
    """A relative `/`-separated path inside a tree; refuses anything that could escape it."""
    kind = "path"
    if not isinstance(path, str) or not path:
        raise InvalidNameError(kind, str(path), "it is empty")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise InvalidNameError(kind, path, f"longer than {MAX_PATH} bytes")
    if "\x00" in path or _has_control(path):
        raise InvalidNameError(kind, path, "contains a control character")
    if "\\" in path:
        raise InvalidNameError(kind, path, "contains a backslash")
    if path.startswith("/"):
        raise InvalidNameError(kind, path, "is absolute")
    segments = path.split("/")
    if _DRIVE.match(segments[0]):
        raise InvalidNameError(kind, path, "starts with a drive letter")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidNameError(kind, path, "has an empty, '.' or '..' segment")
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT:
            raise InvalidNameError(kind, path, f"has a segment longer than {MAX_SEGMENT} bytes")
    return path


def parse_ref(ref: str, known_names: Iterable[str] = ()) -> Ref:
    """Parse `name@version[/path]`, `name[/path]` or `blake3:<hex>[/path]`.

    Without `@`, the longest of `known_names` that prefixes `ref` is the model name and the
    rest is the path; with no such name, the whole ref is the name.
    """
    if not isinstance(ref, str) or not ref:
        raise InvalidNameError("ref", str(ref), "it is empty")
    if ref.startswith("blake3:"):
        head, _, path = ref.partition("/")
        return Ref(None, None, validate_relpath(path) if path else None, Digest.parse(head))
    if "@" in ref:
        name, _, rest = ref.partition("@")
        version, _, path = rest.partition("/")
        return Ref(
            validate_name(name), validate_version(version), validate_relpath(path) if path else None
        )
    for name in sorted(known_names, key=len, reverse=True):
        if ref == name:
            return Ref(name, None, None)
        if ref.startswith(name + "/"):
            return Ref(name, None, validate_relpath(ref[len(name) + 1 :]))
    return Ref(validate_name(ref), None, None)
