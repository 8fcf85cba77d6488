"""Names, versions, relative paths and refs: untrusted data refused before touching the disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cas.digest import hash_bytes
from cas.errors import InvalidNameError, UsageError
from cas.names import (
    MAX_NAME,
    MAX_PATH,
    MAX_SEGMENT,
    MAX_VERSION,
    Ref,
    parse_ref,
    validate_name,
    validate_relpath,
    validate_version,
)

D = hash_bytes(b"x")


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good", ["resnet50", "acme/tiny", "a", "A.b_c-d", "org/repo.v2/sub", "x" * MAX_NAME, "1abc"]
)
def test_validate_name_accepts(good: str) -> None:
    assert validate_name(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/abs",
        "../x",
        "a/../b",
        "a/./b",
        "a//b",
        "a/",
        ".",
        "..",
        ".hidden",
        "-dash",
        "a b",
        "a\\b",
        "C:\\x",
        "C:/x",
        "\\\\server\\share",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "a@1",
        "x" * (MAX_NAME + 1),
        "naïve",
    ],
)
def test_validate_name_refuses(bad: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_name(bad)
    assert repr(bad) in str(info.value)
    assert info.value.value == bad
    assert info.value.exit_code == 2


def test_validate_name_refuses_non_str() -> None:
    with pytest.raises(InvalidNameError):
        validate_name(None)  # type: ignore[arg-type]


# --- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good", ["1", "1.2.0", "1.10", "2024-01-01", "v1.0+cpu", "1!2.0", "rc_1", "x" * MAX_VERSION]
)
def test_validate_version_accepts(good: str) -> None:
    assert validate_version(good) == good


@pytest.mark.parametrize(
    "bad",
    ["", "1/2", "1@2", "../1", ".1", "-1", "1 2", "1\n", "1\x00", "a\\b", "x" * (MAX_VERSION + 1)],
)
def test_validate_version_refuses(bad: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_version(bad)
    assert repr(bad) in str(info.value)


# --- relative paths -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        "model.onnx",
        "onnx/model.onnx",
        "a/b/c/d.bin",
        "..x",
        "x..",
        "a/...",
        "name with space.txt",
        "ünïcödé/файл",
        "x" * MAX_SEGMENT,
        "/".join(["y" * 200] * 20),
    ],
)
def test_validate_relpath_accepts(good: str) -> None:
    assert validate_relpath(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/x",
        "/etc/passwd",
        "C:\\x",
        "C:/x",
        "c:x",
        "\\\\server\\share",
        "a\\b",
        "a/../b",
        "..",
        "../x",
        "x/..",
        ".",
        "./x",
        "a/./b",
        "a//b",
        "a/",
        "a\x00b",
        "a\x01b",
        "a\nb",
        "a\rb",
        "a\x1bb",
        "a\x7fb",
        "a\x85b",
        "x" * (MAX_SEGMENT + 1),
        "é" * (MAX_SEGMENT // 2 + 1),  # 2 bytes each in UTF-8: over the limit in bytes
        "/".join(["y" * 250] * 17),  # over MAX_PATH bytes
    ],
)
def test_validate_relpath_refuses(bad: str) -> None:
    with pytest.raises(InvalidNameError) as info:
        validate_relpath(bad)
    assert repr(bad) in str(info.value)
    assert info.value.value == bad
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)


def test_relpath_limit_is_in_bytes() -> None:
    assert len("/".join(["y" * 250] * 17).encode()) > MAX_PATH


# --- hypothesis: accepted paths stay inside, `..` is always refused -------------------------

_segment_chars = st.characters(blacklist_categories=("Cs",))
_segments = st.one_of(
    st.text(_segment_chars, min_size=1, max_size=20),
    st.sampled_from([".", "..", "", "...", "a", "C:", "c:", "~", "\\", "%2e%2e", "\u202e"]),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(), st.lists(_segments, min_size=1, max_size=6).map("/".join)))
def test_accepted_relpath_stays_inside_store(tmp_path: Path, candidate: str) -> None:
    try:
        p = validate_relpath(candidate)
    except InvalidNameError:
        return
    root = tmp_path.resolve()
    resolved = (root / p).resolve()
    assert os.path.commonpath([root, resolved]) == str(root)
    assert resolved != root
    assert ".." not in p.split("/")


@given(
    st.lists(st.text(_segment_chars, min_size=1, max_size=10), max_size=4),
    st.lists(st.text(_segment_chars, min_size=1, max_size=10), max_size=4),
)
def test_any_dotdot_segment_is_refused(before: list[str], after: list[str]) -> None:
    path = "/".join([*before, "..", *after])
    with pytest.raises(InvalidNameError):
        validate_relpath(path)


# --- refs -----------------------------------------------------------------------------------


def test_parse_ref_name() -> None:
    assert parse_ref("resnet50") == Ref("resnet50", None, None)


def test_parse_ref_name_version() -> None:
    assert parse_ref("resnet50@1.2.0") == Ref("resnet50", "1.2.0", None)


def test_parse_ref_name_version_path() -> None:
    assert parse_ref("acme/tiny@1.0/onnx/model.onnx") == Ref("acme/tiny", "1.0", "onnx/model.onnx")


def test_parse_ref_longest_known_name_wins() -> None:
    known = ["acme", "acme/tiny", "acme/tiny-2"]
    assert parse_ref("acme/tiny/config.json", known) == Ref("acme/tiny", None, "config.json")
    assert parse_ref("acme/tiny", known) == Ref("acme/tiny", None, None)
    assert parse_ref("acme/other/x.bin", known) == Ref("acme", None, "other/x.bin")
    assert parse_ref("acme/tiny-2/a/b", known) == Ref("acme/tiny-2", None, "a/b")


def test_parse_ref_unknown_prefix_is_a_whole_name() -> None:
    assert parse_ref("acme/tiny/config.json") == Ref("acme/tiny/config.json", None, None)


def test_parse_ref_digest_and_path() -> None:
    assert parse_ref(str(D)) == Ref(None, None, None, D)
    assert parse_ref(f"{D}/sub/f.bin") == Ref(None, None, "sub/f.bin", D)


def test_ref_str_round_trips() -> None:
    for text in ["m", "m@1", "acme/tiny@1.0/a/b.json", f"{D}/x"]:
        assert str(parse_ref(text)) == text


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "m@",
        "@1",
        "m@1/../../etc/passwd",
        "m@1//x",
        "m@1/a\\b",
        "m@1/\x00",
        "../x",
        "/m",
        "blake3:" + "A" * 64,
        "blake3:abc/x",
        f"{D}/../x",
        "m@1@2",
        "m@1 /x",
    ],
)
def test_parse_ref_refuses(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_ref(bad, ["m"])


def test_parse_ref_known_name_with_bad_path_refused() -> None:
    with pytest.raises(InvalidNameError) as info:
        parse_ref("acme/tiny/../../etc/passwd", ["acme/tiny"])
    assert "../../etc/passwd" in str(info.value)
