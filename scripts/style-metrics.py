#!/usr/bin/env python3
"""Measures the C tree the way ../shared/STYLE.md measures its models:
width, blank lines in function bodies, function length (median and 90th
percentile), comment share, TODO-style marks per 1000 lines."""
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIRS = ["include", "lib", "cli", "hub", "agent", "bench", "fuzz"]


def sources():
    for d in DIRS:
        yield from sorted((ROOT / d).rglob("*.[ch]"))


def measure(paths):
    lines = wide = comment = marks = 0
    body_lines = body_blank = 0
    lengths = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        in_comment = False
        in_body = False
        start = 0
        for i, raw in enumerate(text.splitlines()):
            line = raw.expandtabs(8)
            lines += 1
            wide += len(line) > 80
            stripped = line.strip()
            if re.search(r"\b(TODO|FIXME|XXX|HACK)\b", stripped):
                marks += 1
            if in_comment or stripped.startswith(("/*", "//", "*")):
                comment += 1
            if "/*" in stripped and "*/" not in stripped:
                in_comment = True
            elif "*/" in stripped:
                in_comment = False
            if path.suffix == ".c" and line.startswith("{"):
                in_body, start = True, i
                continue
            if in_body:
                if line.startswith("}"):
                    in_body = False
                    lengths.append(i - start - 1)
                else:
                    body_lines += 1
                    body_blank += stripped == ""
    return {
        "files": len(paths),
        "lines": lines,
        "wider than 80": wide,
        "blank lines in bodies": f"{100 * body_blank / max(body_lines, 1):.1f}%",
        "functions": len(lengths),
        "function length median": statistics.median(lengths) if lengths else 0,
        "function length 90th pct": (statistics.quantiles(lengths, n=10)[-1]
                                     if len(lengths) > 1 else 0),
        "comment lines": f"{100 * comment / max(lines, 1):.1f}%",
        "TODO/FIXME/XXX per 1000 lines": f"{1000 * marks / max(lines, 1):.2f}",
    }


def main():
    paths = list(sources())
    for key, value in measure(paths).items():
        print(f"{key:32} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
