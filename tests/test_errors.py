"""The error tree: each class's exit code and the builtin a caller can catch instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cas import errors
from cas.digest import InvalidDigestError
from cas.errors import (
    AllSourcesFailedError,
    BlobNotFoundError,
    DriftError,
    IntegrityError,
    InvalidNameError,
    LockfileError,
    LockTimeoutError,
    ManifestError,
    ModelNotFoundError,
    NotFoundError,
    ProjectNotFoundError,
    SourceError,
    StoreFormatError,
    UsageError,
    VVStoreError,
)

# shared/ sits beside the repository checkout (locally and in CI)
DESIGN = Path(__file__).resolve().parents[2] / "shared" / "DESIGN.md"

CASES = [
    (VVStoreError, 1, Exception),
    (UsageError, 2, ValueError),
    (InvalidNameError, 2, ValueError),
    (InvalidDigestError, 2, ValueError),
    (ManifestError, 3, ValueError),
    (LockfileError, 3, ValueError),
    (DriftError, 3, ValueError),
    (NotFoundError, 4, FileNotFoundError),
    (ModelNotFoundError, 4, FileNotFoundError),
    (BlobNotFoundError, 4, FileNotFoundError),
    (ProjectNotFoundError, 4, FileNotFoundError),
    (IntegrityError, 5, ValueError),
    (SourceError, 6, OSError),
    (AllSourcesFailedError, 6, OSError),
    (LockTimeoutError, 7, TimeoutError),
    (StoreFormatError, 8, OSError),
]


@pytest.mark.parametrize(("cls", "code", "builtin"), CASES, ids=[c[0].__name__ for c in CASES])
def test_exit_code_and_builtin_base(cls: type, code: int, builtin: type) -> None:
    assert cls.exit_code == code
    assert issubclass(cls, builtin)
    assert issubclass(cls, VVStoreError)


def _instances() -> list[VVStoreError]:
    return [
        VVStoreError("m"),
        UsageError("m"),
        InvalidNameError("model name", "x y", "bad"),
        ManifestError("f.yaml", "$.models[0]", "bad"),
        LockfileError("vvstore.lock", None, "bad"),
        DriftError("vvstore.yaml", "$.models[0]", "drift"),
        NotFoundError("m"),
        ModelNotFoundError("m"),
        BlobNotFoundError("blake3:" + "0" * 64),
        ProjectNotFoundError("m"),
        IntegrityError("m", expected="a", actual="b"),
        SourceError("https://h/x", "boom"),
        AllSourcesFailedError("m@1", [("s3://b/k", "403"), ("https://h/x", "timeout")]),
        LockTimeoutError("m"),
        StoreFormatError("m"),
    ]


@pytest.mark.parametrize("err", _instances(), ids=lambda e: type(e).__name__)
def test_caught_as_builtin(err: VVStoreError) -> None:
    builtin = next(b for c, _, b in CASES if c is type(err))
    with pytest.raises(builtin):
        raise err
    assert str(err)


def test_structured_fields() -> None:
    e = InvalidNameError("path", "../x", "has a '..' segment")
    assert (e.kind, e.value, e.reason) == ("path", "../x", "has a '..' segment")
    assert "'../x'" in str(e)
    m = ManifestError("vvstore.yaml", "$.models[1].name", "bad", hint="fix it")
    assert (m.file, m.field, m.problem) == ("vvstore.yaml", "$.models[1].name", "bad")
    assert str(m) == "vvstore.yaml: $.models[1].name: bad (fix it)"
    i = IntegrityError("x", expected="blake3:a", actual="blake3:b")
    assert (i.expected, i.actual) == ("blake3:a", "blake3:b")
    b = BlobNotFoundError("blake3:" + "1" * 64)
    assert b.digest in str(b)
    s = SourceError("https://h/x", "boom", transient=True)
    assert (s.url, s.reason, s.transient) == ("https://h/x", "boom", True)
    a = AllSourcesFailedError("m@1", [("s3://b/k", "403"), ("https://h/x", "timeout")])
    assert "s3://b/k: 403" in str(a) and "https://h/x: timeout" in str(a)
    assert a.failures == [("s3://b/k", "403"), ("https://h/x", "timeout")]


def test_every_documented_exit_code_is_used() -> None:
    text = " ".join(DESIGN.read_text().split()) if DESIGN.exists() else ""
    wanted = set(range(1, 9))  # DESIGN.md: 1 other .. 8 unknown store format
    families = r"other failure|usage|manifest|not found|integrity|remote|lock timeout|unknown store"
    documented = {int(n) for n in re.findall(rf"(\d) (?:{families})", text)}
    if documented:
        assert documented == wanted
    classes = [getattr(errors, n) for n in dir(errors)]
    used = {c.exit_code for c in classes if isinstance(c, type) and issubclass(c, VVStoreError)}
    assert wanted <= used


def test_tree_in_docstring_names_every_class() -> None:
    doc = errors.__doc__ or ""
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, VVStoreError):
            assert name in doc
