"""The README's table of image sizes, from what the image builds recorded (never typed by hand).

    python -m tools.image_sizes dist/image-sizes.tsv README.md        (make image-sizes)

``images/build.sh`` appends one line per build to ``dist/image-sizes.tsv``: variant (cpu, cuda,
or model for a model image), tag, size in bytes as ``docker image inspect --format '{{.Size}}'``
gives it. The newest line per variant wins. The section between ``<!-- image-sizes:start -->``
and ``<!-- image-sizes:end -->`` is replaced (``readme_results.replace_section``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.readme_results import replace_section

START, END = "<!-- image-sizes:start -->", "<!-- image-sizes:end -->"
ORDER = ("cpu", "cuda", "model")


def read_sizes(path: Path) -> dict[str, tuple[str, int]]:
    """``{variant: (tag, bytes)}``, the newest build of each variant."""
    sizes: dict[str, tuple[str, int]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("\t")
        if len(fields) != 3 or not fields[2].isdigit():
            raise SystemExit(f"image_sizes: {path}:{n}: expected 'variant<TAB>tag<TAB>bytes', got {line!r}")
        sizes[fields[0]] = (fields[1], int(fields[2]))
    if not sizes:
        raise SystemExit(f"image_sizes: {path} is empty: run make images first")
    return sizes


def table(sizes: dict[str, tuple[str, int]]) -> str:
    rows = sorted(sizes.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0]))
    lines = ["| image | tag | size |", "|---|---|---|"]
    lines += [f"| {variant} | `{tag}` | {size / 1e9:.2f} GB ({size:,} bytes) |" for variant, (tag, size) in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", type=Path, help="dist/image-sizes.tsv, written by images/build.sh")
    ap.add_argument("readme", type=Path)
    args = ap.parse_args(argv)
    replace_section(args.readme, f"{START}\n{table(read_sizes(args.sizes))}\n{END}", START, END)
    print(args.readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
