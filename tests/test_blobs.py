"""The blob directory: publish (copy, reflink, hardlink), read, freshen, delete, iterate."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import blake3
import pytest

from cas.blobs import BlobStore
from cas.digest import Digest
from cas.errors import BlobNotFoundError, IntegrityError, StoreFormatError
from cas.layout import CACHEDIR_TAG, LAYOUT_VERSION

OLD = 1_000_000_000  # 2001: an mtime far in the past


def digest_of(data: bytes) -> Digest:
    """Computed independently of cas.digest."""
    return Digest(blake3.blake3(data).hexdigest())


def files_under(path: Path) -> list[Path]:
    """Every non-directory entry (files and symlinks) below `path`."""
    return sorted(p for p in path.rglob("*") if p.is_symlink() or not p.is_dir())


def write(path: Path, data: bytes, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mode is not None:
        os.chmod(path, mode)
    return path


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- creating and opening a store ------------------------------------------------------------


def test_new_store_has_version_and_cachedir_tag(blob_store: BlobStore, vv_home: Path) -> None:
    assert blob_store.root == vv_home
    assert (vv_home / "VERSION").read_text() == f"{LAYOUT_VERSION}\n"
    assert (vv_home / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG
    for d in ("blobs/blake3", "tmp", "roots", "pins", "locks", "quarantine", "index"):
        assert (vv_home / d).is_dir()


def test_default_root_is_vvstore_home(vv_home: Path) -> None:
    assert BlobStore().root == vv_home
    assert (vv_home / "VERSION").is_file()


def test_reopen_existing_store_and_restore_pruned_dirs(
    blob_store: BlobStore, vv_home: Path
) -> None:
    (vv_home / "tmp").rmdir()
    again = BlobStore(vv_home)
    assert again.layout.tmp.is_dir()


def test_empty_existing_directory_becomes_a_store(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    BlobStore(tmp_path / "empty")
    assert (tmp_path / "empty" / "VERSION").is_file()


def test_unknown_version_refused(vv_home: Path) -> None:
    BlobStore(vv_home)
    (vv_home / "VERSION").write_text("9\n")
    with pytest.raises(StoreFormatError) as info:
        BlobStore(vv_home)
    assert info.value.exit_code == 8
    assert isinstance(info.value, OSError)
    assert "'9'" in str(info.value)
    assert (vv_home / "VERSION").read_text() == "9\n"  # never rewritten


def test_non_empty_directory_without_version_refused(tmp_path: Path) -> None:
    root = tmp_path / "notastore"
    write(root / "precious.txt", b"keep me")
    with pytest.raises(StoreFormatError) as info:
        BlobStore(root)
    assert info.value.exit_code == 8
    assert str(root) in str(info.value)
    assert sorted(p.name for p in root.iterdir()) == ["precious.txt"]


def test_store_path_that_is_a_file_refused(tmp_path: Path) -> None:
    write(tmp_path / "file", b"x")
    with pytest.raises(StoreFormatError):
        BlobStore(tmp_path / "file")


def test_create_false_refuses_a_missing_store(tmp_path: Path) -> None:
    with pytest.raises(StoreFormatError):
        BlobStore(tmp_path / "missing", create=False)
    assert not (tmp_path / "missing" / "VERSION").exists()


# --- publishing ------------------------------------------------------------------------------


def test_publish_lands_at_sharded_read_only_path(
    blob_store: BlobStore, vv_home: Path, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    src = write(tmp_path / "model.bin", data, 0o644)
    hexd = blake3.blake3(data).hexdigest()
    pub = blob_store.publish_file(src)
    assert (pub.digest.hex, pub.size, pub.new, pub.link) == (hexd, len(data), True, "copy")
    blob = vv_home / "blobs" / "blake3" / hexd[:2] / hexd[2:]
    assert blob_store.path(pub.digest) == blob
    assert blob.read_bytes() == data
    assert stat.S_ISREG(os.lstat(blob).st_mode)
    assert mode_of(blob) == 0o444
    assert files_under(vv_home / "blobs") == [blob]
    assert files_under(vv_home / "tmp") == []
    # copy leaves the source alone
    assert mode_of(src) == 0o644 and os.stat(src).st_ino != os.stat(blob).st_ino


def test_publish_empty_file(blob_store: BlobStore, tmp_path: Path) -> None:
    pub = blob_store.publish_file(write(tmp_path / "empty", b""))
    assert pub.digest == digest_of(b"") and pub.size == 0
    assert blob_store.path(pub.digest).read_bytes() == b""


def test_publish_twice_is_a_noop_that_freshens(
    blob_store: BlobStore, vv_home: Path, tmp_path: Path
) -> None:
    data = os.urandom(5000)
    first = blob_store.publish_file(write(tmp_path / "a", data))
    blob = blob_store.path(first.digest)
    ino = os.stat(blob).st_ino
    os.utime(blob, (OLD, OLD))
    second = blob_store.publish_file(write(tmp_path / "b", data))
    assert second.new is False and second.digest == first.digest
    assert os.stat(blob).st_mtime > OLD + 1e8
    assert os.stat(blob).st_ino == ino  # not replaced
    assert files_under(vv_home / "blobs") == [blob]
    assert files_under(vv_home / "tmp") == []


def test_publish_bytes(blob_store: BlobStore) -> None:
    pub = blob_store.publish_bytes(b"tree document")
    assert pub.digest == digest_of(b"tree document") and pub.new
    assert blob_store.publish_bytes(b"tree document").new is False


def test_publish_records_audit(blob_store: BlobStore) -> None:
    pub = blob_store.publish_bytes(b"audited")
    entries = list(blob_store.audit.entries())
    assert any(e["action"] == "publish" and e["digest"] == str(pub.digest) for e in entries)


def test_writer_abort_on_exception_leaves_nothing(blob_store: BlobStore, vv_home: Path) -> None:
    with pytest.raises(RuntimeError), blob_store.writer() as w:
        w.write(b"half")
        raise RuntimeError("boom")
    assert files_under(vv_home / "tmp") == []
    assert files_under(vv_home / "blobs") == []


# --- reading, freshening, deleting -----------------------------------------------------------


def test_absent_blob(blob_store: BlobStore) -> None:
    d = digest_of(b"never stored")
    assert not blob_store.has(d)
    assert blob_store.freshen(d) is False
    assert blob_store.delete(d) is False
    with pytest.raises(BlobNotFoundError) as info:
        blob_store.require(d)
    assert info.value.digest == str(d) and info.value.exit_code == 4
    with pytest.raises(BlobNotFoundError):
        blob_store.open(d)


def test_has_require_open_freshen_delete(blob_store: BlobStore) -> None:
    data = b"some model bytes"
    d = blob_store.publish_bytes(data).digest
    path = blob_store.path(d)
    assert blob_store.has(d)
    os.utime(path, (OLD, OLD))
    assert blob_store.require(d) == path
    assert os.stat(path).st_mtime > OLD + 1e8  # require freshens
    os.utime(path, (OLD, OLD))
    with blob_store.open(d) as f:
        assert f.read() == data
        with pytest.raises(OSError):
            f.write(b"x")  # type: ignore[attr-defined]
    assert os.stat(path).st_mtime > OLD + 1e8  # open freshens
    os.utime(path, (OLD, OLD))
    assert blob_store.freshen(d) is True
    assert os.stat(path).st_mtime > OLD + 1e8
    assert blob_store.delete(d) is True
    assert not blob_store.has(d) and not path.exists()
    assert blob_store.delete(d) is False


def test_iter_blobs_lists_blobs_and_ignores_foreign_files(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    datas = [b"one", b"two" * 1000, b""]
    pubs = [blob_store.publish_bytes(d) for d in datas]
    blobs = blob_store.layout.blobs
    write(blobs / "README", b"foreign")
    write(blobs / "zz" / "notes.txt", b"foreign")
    write(blobs / "ab" / "short", b"foreign")
    write(blobs / "abc" / ("0" * 62), b"three-char shard")
    write(blobs / "AB" / ("0" * 62), b"uppercase shard")
    (blobs / "cd" / ("1" * 62)).mkdir(parents=True)  # a directory with a blob's name
    write(tmp_path / "outside", b"outside")
    os.symlink(tmp_path / "outside", blobs / "cd" / ("2" * 62))  # a planted symlink
    found = {b.digest: b for b in blob_store.iter_blobs()}
    assert set(found) == {p.digest for p in pubs}
    for p in pubs:
        assert found[p.digest].size == p.size
        assert found[p.digest].mtime == os.stat(blob_store.path(p.digest)).st_mtime


def test_iter_blobs_of_empty_store(blob_store: BlobStore) -> None:
    assert list(blob_store.iter_blobs()) == []


def test_planted_symlink_is_not_a_blob(blob_store: BlobStore, tmp_path: Path) -> None:
    secret = write(tmp_path / "secret", b"outside the store")
    os.utime(secret, (OLD, OLD))
    d = digest_of(b"outside the store")
    link = blob_store.path(d)
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(secret, link)
    assert not blob_store.has(d)
    assert blob_store.freshen(d) is False
    with pytest.raises(BlobNotFoundError):
        blob_store.open(d)
    with pytest.raises(BlobNotFoundError):
        blob_store.require(d)
    assert os.stat(secret).st_mtime == OLD  # never touched through the link
    # publishing the real bytes replaces the link with a real blob
    pub = blob_store.publish_bytes(b"outside the store")
    assert pub.new and not link.is_symlink() and stat.S_ISREG(os.lstat(link).st_mode)
    assert secret.read_bytes() == b"outside the store"


def test_planted_symlinked_shard_directory_is_not_followed(
    blob_store: BlobStore, tmp_path: Path
) -> None:
    d = digest_of(b"evil shard")
    outside = tmp_path / "outside_shard"
    write(outside / d.hex[2:], b"evil shard")
    shard = blob_store.path(d).parent
    assert not shard.exists()
    os.symlink(outside, shard)
    assert list(blob_store.iter_blobs()) == []
    assert not blob_store.has(d), "has() followed a symlinked shard directory out of the store"
    with pytest.raises(BlobNotFoundError):
        blob_store.open(d)


# --- integrity -------------------------------------------------------------------------------


def _assert_quarantined(vv_home: Path, data: bytes, reason_part: str) -> None:
    q = files_under(vv_home / "quarantine")
    kept = [p for p in q if not p.name.endswith(".reason")]
    reasons = [p for p in q if p.name.endswith(".reason")]
    assert len(kept) == 1 and len(reasons) == 1
    assert kept[0].read_bytes() == data
    assert reasons[0].name == kept[0].name + ".reason"
    assert reason_part in reasons[0].read_text()
    assert files_under(vv_home / "blobs") == []
    assert files_under(vv_home / "tmp") == []


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_expected_digest_mismatch(
    blob_store: BlobStore, vv_home: Path, tmp_path: Path, link: str
) -> None:
    data = b"not what was promised"
    src = write(tmp_path / "src", data, 0o640)
    wrong = digest_of(b"what was promised")
    with pytest.raises(IntegrityError) as info:
        blob_store.publish_file(src, link=link, expected=wrong)  # type: ignore[arg-type]
    err = info.value
    assert err.exit_code == 5 and isinstance(err, ValueError)
    assert err.expected == str(wrong) and err.actual == str(digest_of(data))
    _assert_quarantined(vv_home, data, str(wrong))
    assert src.read_bytes() == data and mode_of(src) == 0o640
    entries = list(blob_store.audit.entries())
    assert any(e["action"] == "quarantine" and e["outcome"] == "failed" for e in entries)


def test_expected_digest_match_publishes(blob_store: BlobStore, tmp_path: Path) -> None:
    data = b"as promised"
    pub = blob_store.publish_file(write(tmp_path / "src", data), expected=digest_of(data))
    assert pub.new and blob_store.has(digest_of(data))


def test_expected_size_mismatch(blob_store: BlobStore, vv_home: Path) -> None:
    data = b"twelve bytes"
    with pytest.raises(IntegrityError) as info, blob_store.writer() as w:
        w.write(data)
        w.commit(expected=digest_of(data), expected_size=len(data) + 1, what="m@1/x")
    assert info.value.exit_code == 5
    assert info.value.expected == str(len(data) + 1) and info.value.actual == str(len(data))
    assert "m@1/x" in str(info.value)
    _assert_quarantined(vv_home, data, "size")


def test_publish_bytes_digest_mismatch(blob_store: BlobStore, vv_home: Path) -> None:
    with pytest.raises(IntegrityError):
        blob_store.publish_bytes(b"abc", expected=digest_of(b"abd"))
    _assert_quarantined(vv_home, b"abc", "digest")


# --- link modes ------------------------------------------------------------------------------


def test_hardlink_shares_the_inode_and_makes_source_read_only(
    blob_store: BlobStore, vv_home: Path, tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    src = write(tmp_path / "w.bin", data, 0o644)
    pub = blob_store.publish_file(src, link="hardlink")
    blob = blob_store.path(pub.digest)
    assert pub.new and pub.link == "hardlink" and pub.digest == digest_of(data)
    assert os.stat(src).st_ino == os.stat(blob).st_ino
    assert mode_of(src) == 0o444 and mode_of(blob) == 0o444
    assert blob.read_bytes() == data
    assert files_under(vv_home / "tmp") == []


def test_hardlink_onto_existing_blob_restores_source_mode(
    blob_store: BlobStore, vv_home: Path, tmp_path: Path
) -> None:
    data = os.urandom(30_000)
    first = blob_store.publish_file(write(tmp_path / "a", data))
    blob = blob_store.path(first.digest)
    src = write(tmp_path / "b", data, 0o640)
    pub = blob_store.publish_file(src, link="hardlink")
    assert pub.new is False and pub.digest == first.digest
    assert mode_of(src) == 0o640
    assert os.stat(src).st_ino != os.stat(blob).st_ino
    assert files_under(vv_home / "tmp") == []


def _no_ficlone(*args: object, **kwargs: object) -> None:
    raise OSError(errno.EOPNOTSUPP, "Operation not supported")


def test_reflink_falls_back_to_copy(
    blob_store: BlobStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(fcntl, "ioctl", _no_ficlone)
    data = os.urandom(40_000)
    src = write(tmp_path / "r.bin", data, 0o644)
    with caplog.at_level(logging.WARNING, logger="vvstore"):
        pub = blob_store.publish_file(src, link="reflink")
    assert pub.new and pub.link == "copy" and pub.digest == digest_of(data)
    assert blob_store.path(pub.digest).read_bytes() == data
    assert mode_of(src) == 0o644
    assert any("reflink" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_reflink_fallback_leaves_no_temp_file(
    blob_store: BlobStore, vv_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: the FICLONE attempt's temp file stayed in tmp/ when the copy fallback ran."""
    monkeypatch.setattr(fcntl, "ioctl", _no_ficlone)
    blob_store.publish_file(write(tmp_path / "r.bin", b"reflink me"), link="reflink")
    assert files_under(vv_home / "tmp") == []


def test_reflink_on_this_filesystem(blob_store: BlobStore, vv_home: Path, tmp_path: Path) -> None:
    """Whatever the filesystem (FICLONE or not), the right bytes are published, once."""
    data = os.urandom(20_000)
    pub = blob_store.publish_file(write(tmp_path / "r.bin", data), link="reflink")
    assert pub.link in ("reflink", "copy") and pub.digest == digest_of(data)
    assert blob_store.path(pub.digest).read_bytes() == data
    assert files_under(vv_home / "blobs") == [blob_store.path(pub.digest)]


def test_copy_leaves_source_untouched(blob_store: BlobStore, tmp_path: Path) -> None:
    src = write(tmp_path / "c.bin", b"copy me", 0o600)
    pub = blob_store.publish_file(src, link="copy")
    assert pub.link == "copy" and mode_of(src) == 0o600


# --- memory ----------------------------------------------------------------------------------

_MEMORY_SCRIPT = textwrap.dedent(
    """
    import os, resource, sys
    from cas.blobs import BlobStore

    def peak_kib():
        # VmHWM belongs to this process image; ru_maxrss survives exec and would carry
        # the parent's (pytest's) peak into this measurement.
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    store, src, link = sys.argv[1:4]
    s = BlobStore(store)
    with open(src, "wb") as f:   # 256 MiB, mostly sparse, with random islands
        f.truncate(256 << 20)
        for off in range(0, 256 << 20, 32 << 20):
            f.seek(off)
            f.write(os.urandom(1 << 20))
    before = peak_kib()
    pub = s.publish_file(src, link=link)
    after = peak_kib()
    print(pub.digest.hex, (after - before) // 1024)
    """
)


def blake3_of_file(path: Path) -> str:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_publishing_256_mib_keeps_memory_flat(tmp_path: Path, link: str) -> None:
    src = tmp_path / "big.bin"
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "store"), str(src), link],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    hexd, extra_mib = out.stdout.split()
    assert hexd == blake3_of_file(src)
    assert int(extra_mib) < 150, f"publishing 256 MiB ({link}) raised peak RSS by {extra_mib} MiB"


def test_kernel_copy_unavailable_falls_back_to_streaming(
    blob_store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where copy_file_range refuses (another filesystem type, an old kernel), add streams
    instead and still publishes exactly the source's bytes."""
    import errno

    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    src = tmp_path / "m.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    src.write_bytes(data)
    pub = blob_store.publish_file(src)
    assert pub.digest.hex == blake3.blake3(data).hexdigest()
    assert blob_store.path(pub.digest).read_bytes() == data


def test_kernel_copy_hashes_what_was_written_across_many_steps(
    blob_store: BlobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many small copy steps (and a write-back sync between them) still hash the whole file
    in order."""
    import cas.atomic as atomic
    import cas.blobs as blobs

    monkeypatch.setattr(blobs, "COPY_STEP", 64 * 1024 + 3)
    monkeypatch.setattr(atomic, "WRITE_BEHIND_EVERY", 256 * 1024)
    src = tmp_path / "m.bin"
    data = os.urandom(2 * (1 << 20) + 5)
    src.write_bytes(data)
    pub = blob_store.publish_file(src)
    assert pub.digest.hex == blake3.blake3(data).hexdigest()
    assert blob_store.path(pub.digest).read_bytes() == data
