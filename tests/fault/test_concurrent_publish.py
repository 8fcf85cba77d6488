"""Several processes publishing at once: one correct blob per digest, no debris, no errors.

Correctness must not depend on locks (DESIGN.md): every writer has its own temp file and the
last `os.replace` wins with identical bytes.
"""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import blake3
import pytest

from cas.blobs import BlobStore

MiB = 1 << 20
ctx = multiprocessing.get_context("fork")


def hexof_file(path: Path) -> str:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def _publish(store: str, srcs: list[str], barrier, results) -> None:  # type: ignore[no-untyped-def]
    done = []
    try:
        barrier.wait(30)
        s = BlobStore(store)
        for src in srcs:
            p = s.publish_file(src)
            done.append((src, p.digest.hex, p.new))
    except Exception as e:  # reported to the parent, which fails the test with it
        results.put((done, f"{type(e).__name__}: {e}"))
        return
    results.put((done, None))


def run_workers(store: Path, jobs: list[list[Path]]) -> list[tuple[str, str, bool]]:
    barrier = ctx.Barrier(len(jobs))
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_publish, args=(str(store), [str(s) for s in srcs], barrier, results))
        for srcs in jobs
    ]
    for p in procs:
        p.start()
    out = [results.get(timeout=120) for _ in jobs]
    for p in procs:
        p.join(60)
    errors = [e for _, e in out if e]
    assert not errors, errors
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return [item for done, _ in out for item in done]


def assert_clean_store(store: Path, wanted: dict[str, bytes | Path]) -> None:
    blobs = sorted(p for p in (store / "blobs" / "blake3").rglob("*") if not p.is_dir())
    assert len(blobs) == len(wanted)
    for blob in blobs:
        hexd = blob.parent.name + blob.name
        assert hexd in wanted
        assert hexof_file(blob) == hexd  # re-hash: the bytes are right
        assert stat.S_IMODE(os.lstat(blob).st_mode) == 0o444
    assert list((store / "tmp").iterdir()) == []
    assert list((store / "quarantine").iterdir()) == []


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(32 * MiB))
    return src


@pytest.mark.parametrize("writers", [2, 4])
def test_same_file_published_at_once(tmp_path: Path, big_file: Path, writers: int) -> None:
    store = tmp_path / "store"
    BlobStore(store)
    want = hexof_file(big_file)
    results = run_workers(store, [[big_file]] * writers)
    assert {hexd for _, hexd, _ in results} == {want}
    assert any(new for *_, new in results)
    assert_clean_store(store, {want: big_file})


def test_different_files_published_at_once(tmp_path: Path, big_file: Path) -> None:
    store = tmp_path / "store"
    BlobStore(store)
    own = []
    for i in range(4):
        p = tmp_path / f"own{i}.bin"
        p.write_bytes(os.urandom(4 * MiB + i))
        own.append(p)
    results = run_workers(store, [[own[i], big_file] for i in range(4)])
    wanted = {hexof_file(p): p for p in [*own, big_file]}
    assert {hexd for _, hexd, _ in results} == set(wanted)
    for src, hexd, _ in results:
        assert hexof_file(Path(src)) == hexd
    assert_clean_store(store, wanted)


def test_first_use_of_a_new_store_from_several_processes(tmp_path: Path) -> None:
    """Processes that open a store that does not exist yet must all succeed, not see a
    half-created store ("not empty and has no VERSION") and fail."""
    store = tmp_path / "fresh-store"
    srcs = []
    for i in range(4):
        p = tmp_path / f"s{i}.bin"
        p.write_bytes(os.urandom(64 * 1024))
        srcs.append(p)
    run_workers(store, [[s] for s in srcs])
    assert (store / "VERSION").read_text() == "1\n"
    assert_clean_store(store, {hexof_file(p): p for p in srcs})
