"""Reference designs for a durable copy-and-hash, timed beside `vvstore add` as yardsticks.

    python -m bench._designs loop SRC DST   read 1 MiB, hash, write; fsync at the end
    python -m bench._designs cfr  SRC DST   kernel copy (copy_file_range) in 64 MiB steps, a
                                            second thread hashing each copied range, write-back
                                            started early (fdatasync every 256 MiB); fsync

Each prints the BLAKE3 hex digest of SRC. Not part of vvstore: they show, in the same run,
how close to `cp` + fsync a copy that also hashes can get on this machine (REFERENCE.md).
"""

from __future__ import annotations

import mmap
import os
import queue
import sys
import threading

import blake3

STEP = 64 << 20
SYNC_EVERY = 4  # steps


def loop(src: str, dst: str, chunk: int = 1 << 20) -> str:
    h = blake3.blake3()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f, open(dst, "xb", buffering=0) as o:
        while n := f.readinto(buf):
            h.update(view[:n])
            o.write(view[:n])
        os.fsync(o.fileno())
    return h.hexdigest()


def cfr(src: str, dst: str) -> str:
    size = os.path.getsize(src)
    h = blake3.blake3()
    ranges: queue.Queue[tuple[int, int] | None] = queue.Queue()
    with open(src, "rb", buffering=0) as f, open(dst, "xb", buffering=0) as o:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None

        def hasher() -> None:  # blake3 releases the GIL for large updates
            while (r := ranges.get()) is not None:
                assert mm is not None
                h.update(memoryview(mm)[r[0] : r[1]])

        t = threading.Thread(target=hasher)
        t.start()
        try:
            off, step = 0, 0
            while off < size:
                n = os.copy_file_range(f.fileno(), o.fileno(), min(STEP, size - off))
                if n <= 0:
                    raise OSError(f"copy_file_range returned {n} at {off}")
                ranges.put((off, off + n))
                off += n
                step += 1
                if step % SYNC_EVERY == 0:
                    os.fdatasync(o.fileno())
        finally:
            ranges.put(None)
            t.join()
        os.fsync(o.fileno())
        if mm is not None:
            mm.close()
    return h.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("loop", "cfr"):
        print(__doc__, file=sys.stderr)
        return 2
    fn = loop if argv[0] == "loop" else cfr
    print(fn(argv[1], argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
