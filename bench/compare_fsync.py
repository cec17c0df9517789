#!/usr/bin/env python3
"""The disk's own group-commit rate, as the audit writer sees it.

    compare_fsync.py DIR SECONDS BATCH [RECORD_BYTES]

Appends BATCH records of RECORD_BYTES (default 300) to a new file in DIR with one
os.write, then os.fdatasync, for SECONDS; the file grows, so every fdatasync also
persists the new size, as the audit log's does. Prints one tab-separated line:

    batch  fsyncs  seconds  fsyncs_per_s  records_per_s  p50_ms  p99_ms  max_ms

and removes its file.
"""

import os
import sys
import time


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    directory, seconds, batch = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    record = (b"x" * (size - 1)) + b"\n"
    chunk = record * batch
    path = os.path.join(directory, f".fsync-probe-{os.getpid()}-{batch}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    lat = []
    try:
        start = time.perf_counter()
        end = start + seconds
        now = start
        while now < end:
            os.write(fd, chunk)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            now = time.perf_counter()
            lat.append(now - t0)
        elapsed = now - start
    finally:
        os.close(fd)
        os.unlink(path)
    lat.sort()
    n = len(lat)

    def pct(p: float) -> float:
        return lat[min(n - 1, int(p * n))] * 1e3

    print(
        f"{batch}\t{n}\t{elapsed:.3f}\t{n / elapsed:.1f}\t{n * batch / elapsed:.1f}"
        f"\t{pct(0.50):.3f}\t{pct(0.99):.3f}\t{lat[-1] * 1e3:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
