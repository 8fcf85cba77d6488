"""Hash, size and PEP 440 version checks; re-verifying a store and quarantining bad blobs."""

from __future__ import annotations

import io
import os
from pathlib import Path

import blake3
import pytest

from cas.blobs import BlobStore
from cas.digest import Digest
from cas.errors import IntegrityError, NotFoundError, UsageError
from cas.manifest import ModelEntry
from cas.validate import ModelValidator, verify_blobs

DATA = b"model weights " * 1000


def digest_of(data: bytes) -> Digest:
    """Computed independently of cas.digest."""
    return Digest(blake3.blake3(data).hexdigest())


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(DATA)
    return path


V = ModelValidator()


# --- hash and size -------------------------------------------------------------------------


def test_check_hash_on_paths_and_streams(model: Path) -> None:
    good, bad = digest_of(DATA), digest_of(b"other")
    assert V.check_hash(model, good) and V.check_hash(str(model), str(good))
    assert not V.check_hash(model, bad)
    assert V.check_hash(io.BytesIO(DATA), good)
    with open(model, "rb") as f:
        assert V.check_hash(f, good)
    assert ModelValidator(threads=False).check_hash(model, good)
    assert not V.check_hash(model.with_name("absent"), good)


def test_check_hash_of_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert V.check_hash(empty, digest_of(b""))


def test_check_hash_refuses_a_malformed_expected_digest(model: Path) -> None:
    with pytest.raises(UsageError):
        V.check_hash(model, "md5:abc")


def test_check_size(model: Path) -> None:
    assert V.check_size(model, len(DATA))
    assert not V.check_size(model, len(DATA) + 1)
    assert not V.check_size(model.with_name("absent"), 0)
    stream = io.BytesIO(DATA)
    stream.seek(4)
    assert V.check_size(stream, len(DATA) - 4)  # from the current position, like the hash
    assert stream.tell() == 4


def test_require_hash_and_size_raise_integrity_errors(model: Path) -> None:
    assert V.require_hash(model, digest_of(DATA)) == digest_of(DATA)
    assert V.require_size(model, len(DATA)) == len(DATA)
    with pytest.raises(IntegrityError) as e:
        V.require_hash(model, digest_of(b"other"))
    assert e.value.exit_code == 5
    assert (e.value.expected, e.value.actual) == (str(digest_of(b"other")), str(digest_of(DATA)))
    assert str(model) in str(e.value)
    with pytest.raises(IntegrityError) as e:
        V.require_size(model, 3)
    assert (e.value.expected, e.value.actual) == ("3", str(len(DATA)))
    with pytest.raises(NotFoundError):
        V.require_hash(model.with_name("absent"), digest_of(DATA))


def test_is_valid_combines_every_given_check(model: Path) -> None:
    d = digest_of(DATA)
    assert V.is_valid(model)
    assert V.is_valid(model, digest=d, size=len(DATA), version="1.4.0", spec=">=1.2,<2")
    assert not V.is_valid(model, digest=d, size=1)
    assert not V.is_valid(model, digest=digest_of(b"x"), size=len(DATA))
    assert not V.is_valid(model, digest=d, version="2.0", spec=">=1.2,<2")
    assert V.is_valid(model, version="2.0")  # a version without a spec checks nothing


# --- versions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "spec", "ok"),
    [
        ("1.4.0", ">=1.2,<2", True),
        ("1.2", ">=1.2,<2", True),
        ("2.0", ">=1.2,<2", False),
        ("1.1.9", ">=1.2,<2", False),
        ("1.2.0", "1.2.0", True),
        ("1.2.0", "==1.2.0", True),
        ("1.2", "1.2.0", True),  # PEP 440: 1.2 == 1.2.0
        ("1.2.1", "1.2.0", False),
        ("1.2.7", "~=1.2.0", True),
        ("1.3", "~=1.2.0", False),
        ("1.9", "==1.*", True),
        ("1.0", "!=1.0", False),
        ("v1.0", "1.0", True),  # a leading v is PEP 440
        ("1.0rc1", ">=0.5", False),  # pre-releases only when the spec names one, as pip
        ("1.0rc1", ">=1.0rc1", True),
        ("1.0rc1", "1.0rc1", True),
        ("2024-05-release", "2024-05-release", True),  # not PEP 440: the identical string only
        ("2024-05-release", "==2024-05-release", True),
        ("2024-05-release", "2024-05-releasf", False),
        ("2024-05-release", ">=1", False),
        ("anything", "", True),
        ("1.0", " >=1.0 ", True),
    ],
)
def test_check_version(version: str, spec: str, ok: bool) -> None:
    assert V.check_version(version, spec) is ok


def test_check_version_of_a_model_entry_and_prereleases_on_request() -> None:
    assert V.check_version(ModelEntry(name="m", version="1.5"), ">=1.2,<2")
    assert V.check_version("1.0rc1", ">=0.5", prereleases=True)


@pytest.mark.parametrize("spec", [">=banana", ">=1,<", "<>1"])
def test_invalid_specifier_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError) as e:
        V.check_version("1.0", spec)
    assert e.value.exit_code == 2 and "PEP 440" in str(e.value)


# --- verify_blobs --------------------------------------------------------------------------


def corrupt_in_place(path: Path, at: int = 0) -> None:
    """Flip one byte of a read-only blob, as bit rot or a stray write would."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(at)
        byte = f.read(1)
        f.seek(at)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, 0o444)


@pytest.fixture
def filled(blob_store: BlobStore) -> list[Digest]:
    return [blob_store.publish_bytes(b"blob %d " % i * (i + 1)).digest for i in range(12)]


@pytest.mark.parametrize("jobs", [1, 4, None])
def test_verify_finds_quarantines_exactly_the_corrupt_blob(
    blob_store: BlobStore, filled: list[Digest], jobs: int | None
) -> None:
    victim = filled[5]
    path = blob_store.path(victim)
    corrupt_in_place(path, at=3)
    actual = digest_of(path.read_bytes())
    seen: list[int] = []
    report = verify_blobs(blob_store, jobs=jobs, progress=seen.append)
    assert report.checked == len(filled)
    assert report.bad == [(victim, actual)]
    assert report.missing == [] and report.errors == [] and not report.ok
    assert report.bytes == sum(seen) == sum(len(b"blob %d " % i * (i + 1)) for i in range(12))
    assert not blob_store.has(victim) and not path.exists()
    [moved] = report.quarantined
    assert moved.parent == blob_store.layout.quarantine and moved.name.startswith(actual.hex)
    assert moved.read_bytes() != b"" and digest_of(moved.read_bytes()) == actual
    reason = Path(f"{moved}.reason").read_text()
    assert str(victim) in reason
    assert all(blob_store.has(d) for d in filled if d != victim)
    assert '"quarantine"' in blob_store.layout.audit_log.read_text()
    again = verify_blobs(blob_store, jobs=jobs)
    assert again.ok and again.checked == len(filled) - 1


def test_verify_only_the_requested_digests(blob_store: BlobStore, filled: list[Digest]) -> None:
    corrupt_in_place(blob_store.path(filled[0]))
    absent = digest_of(b"never stored")
    report = verify_blobs(blob_store, [filled[1], filled[2], absent, filled[1]])
    assert report.checked == 2 and report.ok is False
    assert report.missing == [absent] and report.bad == []
    assert blob_store.has(filled[0])  # not asked about: left alone
    report = verify_blobs(blob_store, [filled[0]])
    assert [d for d, _ in report.bad] == [filled[0]] and not blob_store.has(filled[0])


def test_verify_clean_and_empty_stores(blob_store: BlobStore, filled: list[Digest]) -> None:
    report = verify_blobs(blob_store, jobs=3)
    assert report.ok and report.checked == len(filled) and report.quarantined == []
    for d in filled:
        assert blob_store.path(d).stat().st_mode & 0o777 == 0o444  # only read


def test_verify_empty_store(tmp_path: Path) -> None:
    report = verify_blobs(BlobStore(tmp_path / "s"))
    assert report.ok and report.checked == 0 and report.bytes == 0


def test_one_blob_gets_every_core_many_get_one_each_largest_first(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cas.validate as validate

    small = [blob_store.publish_bytes(b"small %d" % i).digest for i in range(3)]
    big = blob_store.publish_bytes(os.urandom(8192)).digest
    corrupt_in_place(blob_store.path(big), at=8191)
    calls: list[tuple[Digest, bool]] = []
    real = validate._hash_blob

    def spy(store: BlobStore, digest: Digest, threaded: bool):  # type: ignore[no-untyped-def]
        calls.append((digest, threaded))
        return real(store, digest, threaded)

    monkeypatch.setattr(validate, "_hash_blob", spy)
    report = verify_blobs(blob_store, jobs=1)  # one job: each file with every core
    assert report.checked == 4 and [d for d, _ in report.bad] == [big]
    assert sorted(calls) == sorted((d, True) for d in [*small, big])
    calls.clear()
    blob_store.publish_bytes(os.urandom(8192))
    report = verify_blobs(blob_store, jobs=2)  # many jobs: one core per file, largest first
    assert report.ok and report.checked == 4
    assert [t for _, t in calls] == [False] * 4
    assert blob_store.path(calls[0][0]).stat().st_size == 8192
    calls.clear()
    verify_blobs(blob_store, [small[0]], jobs=4)  # a single blob: every core
    assert calls == [(small[0], True)]


def test_verify_counts_a_symlink_as_missing(blob_store: BlobStore, tmp_path: Path) -> None:
    d = digest_of(b"elsewhere")
    (tmp_path / "elsewhere").write_bytes(b"elsewhere")
    blob_store.path(d).parent.mkdir(parents=True, exist_ok=True)
    blob_store.path(d).symlink_to(tmp_path / "elsewhere")
    assert verify_blobs(blob_store, [d]).missing == [d]


def test_verify_leaves_a_blob_replaced_meanwhile(
    blob_store: BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A repair that republished the blob between hash and quarantine keeps its good copy."""
    import cas.validate as validate

    d = blob_store.publish_bytes(b"good").digest
    path = blob_store.path(d)
    corrupt_in_place(path)
    real = validate._hash_blob

    def hash_then_repair(store: BlobStore, digest: Digest, threads: bool):  # type: ignore[no-untyped-def]
        result = real(store, digest, threads)
        tmp = store.layout.tmp / "repaired"
        tmp.write_bytes(b"good")
        os.replace(tmp, store.path(digest))  # a new inode, as publish_temp makes
        return result

    monkeypatch.setattr(validate, "_hash_blob", hash_then_repair)
    report = verify_blobs(blob_store, [d])
    assert report.bad == [] and report.quarantined == []
    assert path.read_bytes() == b"good"
