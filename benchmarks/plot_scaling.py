"""Plot the JSON files of benchmarks/channel_scaling.py side by side (needs matplotlib).

    python benchmarks/plot_scaling.py docs/channel_scaling.json docs/channel_scaling_64k.json \\
        --out docs/img/channel_scaling.png

Left: messages/s of 64-byte messages against the number of sender processes, mapshare and
multiprocessing.Queue, one line per file (ring size).  Right: 1 MiB messages/s through an
8 MiB and a 64 MiB ring.  Each point is the median the JSON records.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="JSON written by channel_scaling.py")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / len(args.files)
    for i, path in enumerate(args.files):
        data = json.loads(path.read_text())
        med: dict[str, float] = data["median"]
        argv: list[str] = data.get("argv", [])
        cap = int(argv[argv.index("--capacity") + 1]) if "--capacity" in argv else 1 << 20
        ring = f"{cap >> 20} MiB ring" if cap >= 1 << 20 else f"{cap >> 10} KiB ring"
        counts = sorted(
            int(k.split()[1]) for k in med if k.startswith("mapshare ") and "senders" in k
        )
        for who, style, label in (
            ("mapshare", "-o", f"mapshare, {ring}"),
            ("Queue", "--s", f"multiprocessing.Queue (run with the {ring})"),
        ):
            ys = [med[f"{who} {n} senders"] / 1e6 for n in counts]
            left.plot(counts, ys, style, label=label)
        big = [med["mapshare 1 MiB, 8 MiB ring"], med["mapshare 1 MiB, 64 MiB ring"]]
        xs = [j + i * width for j in range(2)]
        right.bar(xs, [b / 1e3 for b in big], width, label=f"run with the {ring} sender cells")
    left.set_xscale("log", base=2)
    left.set_xlabel("sender processes")
    left.set_ylabel("64 B messages/s (millions)")
    left.set_title("many senders, one receiver")
    left.legend(fontsize=8)
    right.set_xticks([j + width * (len(args.files) - 1) / 2 for j in range(2)])
    right.set_xticklabels(["8 MiB ring", "64 MiB ring"])
    right.set_ylabel("1 MiB messages/s (thousands)")
    right.set_title("large rings")
    right.legend(fontsize=8)
    fig.suptitle("benchmarks/channel_scaling.py (median per cell)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
