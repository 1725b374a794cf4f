"""Print `make bench`'s closing table from the rows the benchmarks wrote (bench/common.py).

python bench/table.py RESULTS_FILE [--markdown]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import machine

HEAD = ("figure", "goal", "measured", "baseline in the same run", "")


def mark(ok: bool | None) -> str:
    return {True: "met", False: "MISSED", None: ""}[ok]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument(
        "--markdown", action="store_true", help="a Markdown table for docs/performance.md"
    )
    args = ap.parse_args()
    path = Path(args.results)
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    cells = [(r["figure"], r["goal"], r["measured"], r["baseline"], mark(r["ok"])) for r in rows]
    print(f"\nmachine: {machine()}")
    if args.markdown:
        print("| " + " | ".join(HEAD[:4]) + " | |")
        print("|" + "---|" * len(HEAD))
        for c in cells:
            print("| " + " | ".join(c) + " |")
        return
    widths = [max(len(str(c[i])) for c in [HEAD, *cells]) for i in range(len(HEAD))]
    for c in [HEAD, *cells]:
        print("  ".join(str(x).ljust(w) for x, w in zip(c, widths, strict=True)).rstrip())
    missed = sum(1 for r in rows if r["ok"] is False)
    print(f"\n{len(rows)} figures, {missed} goals missed")


if __name__ == "__main__":
    main()
