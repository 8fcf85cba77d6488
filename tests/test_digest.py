"""Digests: parsing, formatting, ordering, and BLAKE3 hashing checked against blake3 itself."""

from __future__ import annotations

import io
import os
import re

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cas.digest import Digest, InvalidDigestError, hash_bytes, hash_chunks, hash_file, hash_stream
from cas.errors import UsageError

# Known answer: BLAKE3 of the empty input, from the BLAKE3 specification's test vectors.
EMPTY = "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
MiB = 1 << 20
SIZES = [0, 1, MiB - 1, MiB + 1, 9 * MiB]
HEX = "0123456789abcdef"


def expected(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


# --- value type -----------------------------------------------------------------------------


def test_parse_and_format_round_trip() -> None:
    d = Digest.parse(EMPTY)
    assert str(d) == EMPTY
    assert d.hex == EMPTY.removeprefix("blake3:")
    assert d.short == EMPTY[: len("blake3:") + 12]
    assert Digest.is_digest(EMPTY)


def test_known_answer_empty_input() -> None:
    assert str(hash_bytes(b"")) == EMPTY
    assert hash_bytes(b"") == Digest.parse(EMPTY)


def test_equality_hash_and_ordering() -> None:
    a, b = Digest("0" * 64), Digest("f" * 64)
    assert a == Digest.parse("blake3:" + "0" * 64)
    assert a != b
    assert len({a, Digest("0" * 64), b}) == 2
    assert a < b and b > a and sorted([b, a]) == [a, b]
    ds = [hash_bytes(bytes([i])) for i in range(20)]
    assert [d.hex for d in sorted(ds)] == sorted(d.hex for d in ds)


@pytest.mark.parametrize(
    "bad",
    [
        "blake3:" + "A" * 64,  # uppercase
        EMPTY.upper(),
        "BLAKE3:" + "a" * 64,  # uppercase prefix
        "blake3:" + "a" * 63,  # short
        "blake3:" + "a" * 65,  # long
        "sha256:" + "a" * 64,  # wrong prefix
        "a" * 64,  # no prefix
        "blake3:" + "g" * 64,  # not hex
        "blake3:",
        "",
        EMPTY + "\n",
        " " + EMPTY,
        EMPTY + "/x",
    ],
)
def test_parse_refuses(bad: str) -> None:
    with pytest.raises(InvalidDigestError) as info:
        Digest.parse(bad)
    assert repr(bad) in str(info.value)  # the message quotes the bad value


@pytest.mark.parametrize("bad", [None, 123, b"blake3:" + b"a" * 64, ["blake3:" + "a" * 64]])
def test_parse_refuses_non_str(bad: object) -> None:
    with pytest.raises(InvalidDigestError):
        Digest.parse(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["A" * 64, "a" * 63, "blake3:" + "a" * 57, "z" * 64])
def test_constructor_refuses_bad_hex(bad: str) -> None:
    with pytest.raises(InvalidDigestError):
        Digest(bad)


def test_invalid_digest_is_a_usage_error() -> None:
    with pytest.raises(InvalidDigestError) as info:
        Digest.parse("nope")
    assert isinstance(info.value, UsageError)
    assert isinstance(info.value, ValueError)
    assert info.value.exit_code == 2
    assert info.value.value == "nope"


@given(st.text(alphabet=HEX, min_size=64, max_size=64))
def test_any_lowercase_hex_round_trips(hexd: str) -> None:
    d = Digest.parse("blake3:" + hexd)
    assert d.hex == hexd
    assert Digest.parse(str(d)) == d


_VALID = re.compile(r"blake3:[0-9a-f]{64}")


@given(
    st.one_of(
        st.text(),
        st.text().map(lambda s: "blake3:" + s),
        st.text(alphabet=HEX + "ABCDEF:blake3", min_size=60, max_size=75),
    )
)
def test_non_digests_are_refused(value: str) -> None:
    if _VALID.fullmatch(value):
        assert str(Digest.parse(value)) == value
        return
    assert not Digest.is_digest(value)
    with pytest.raises(InvalidDigestError) as info:
        Digest.parse(value)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


# --- hashing --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs_by_size() -> dict[int, bytes]:
    return {n: os.urandom(n) for n in SIZES}


@pytest.mark.parametrize("size", SIZES)
def test_hash_bytes_matches_blake3(blobs_by_size: dict[int, bytes], size: int) -> None:
    data = blobs_by_size[size]
    assert str(hash_bytes(data)) == expected(data)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("chunk", [None, 4096, MiB])
def test_hash_stream_matches_blake3(
    blobs_by_size: dict[int, bytes], size: int, chunk: int | None
) -> None:
    data = blobs_by_size[size]
    seen: list[int] = []
    kwargs = {} if chunk is None else {"chunk": chunk}
    digest, n = hash_stream(io.BytesIO(data), progress=seen.append, **kwargs)
    assert str(digest) == expected(data)
    assert n == size
    assert sum(seen) == size


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("threads", [True, False])
def test_hash_file_matches_blake3(
    tmp_path, blobs_by_size: dict[int, bytes], size: int, threads: bool
) -> None:
    data = blobs_by_size[size]
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    digest, n = hash_file(path, threads=threads)
    assert str(digest) == expected(data)
    assert n == size


def test_hash_file_empty_file(tmp_path) -> None:
    path = tmp_path / "empty"
    path.touch()
    digest, n = hash_file(path)
    assert str(digest) == EMPTY
    assert n == 0


def test_hash_chunks_matches_blake3(blobs_by_size: dict[int, bytes]) -> None:
    data = blobs_by_size[MiB + 1]
    pieces = [data[i : i + 1000] for i in range(0, len(data), 1000)]
    digest, n = hash_chunks(pieces)
    assert str(digest) == expected(data)
    assert n == len(data)


def test_different_inputs_differ() -> None:
    assert hash_bytes(b"a") != hash_bytes(b"b")
