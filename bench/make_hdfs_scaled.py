"""Replicate the HDFS 2% sample to N lines with fresh block ids per copy.

Each copy k rewrites ``blk_<n>`` as ``blk_<kk><n>`` so sessions keep their real
length instead of growing k-fold. Writes a plain file and a zstd file.

    python bench/make_hdfs_scaled.py --lines 5000000 --out bench/scratch
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = ROOT.parent / "shared" / "datasets" / "hdfs_loglead_2pct" / "HDFS_2pct_dev.log.zst"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", default=str(DEFAULT_SRC))
    ap.add_argument("--lines", type=int, default=5_000_000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "scratch"))
    args = ap.parse_args()
    src = Path(args.src)
    if not src.exists():
        print(f"missing {src}: the HDFS 2% sample is needed for this benchmark", file=sys.stderr)
        return 1
    with open(src, "rb") as fh:
        base = zstandard.ZstdDecompressor().stream_reader(fh).read().decode().splitlines()
    copies = -(-args.lines // len(base))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plain = out / f"hdfs_{copies * len(base) // 1_000_000}M.log"
    rx = re.compile(r"blk_(-?)(\d+)")
    with open(plain, "w") as f:
        for k in range(copies):
            text = "\n".join(base) + "\n"
            f.write(text if k == 0 else rx.sub(lambda m, k=k: f"blk_{m.group(1)}{k:02d}{m.group(2)}", text))
    zst = plain.with_suffix(".log.zst")
    with open(plain, "rb") as fi, open(zst, "wb") as fo:
        zstandard.ZstdCompressor(level=3, threads=-1).copy_stream(fi, fo)
    print(f"{copies * len(base):,} lines → {plain} ({plain.stat().st_size:,} B), {zst} ({zst.stat().st_size:,} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
