"""Wall time of each workflow stage from Snakemake's benchmark files.

    python benchmarks/stage_times.py results/default/benchmarks

Prints one line per job (seconds, max RSS) and the total per stage (the folder under
benchmarks/), so a closing note can quote where the time went.
"""

import csv
import sys
from collections import defaultdict
from pathlib import Path


def main(root: str) -> None:
    per_stage: dict[str, float] = defaultdict(float)
    rows = []
    for path in sorted(Path(root).rglob("*.tsv")):
        with open(path) as fh:
            record = next(csv.DictReader(fh, delimiter="\t"))
        seconds = float(record["s"])
        stage = path.relative_to(root).parts[0]
        per_stage[stage] += seconds
        rows.append((str(path.relative_to(root)), seconds, record.get("max_rss", "")))
    for name, seconds, rss in rows:
        print(f"{name:60s} {seconds:9.1f} s  max RSS {rss} MB")
    print()
    for stage, seconds in sorted(per_stage.items(), key=lambda kv: -kv[1]):
        print(f"{stage:20s} {seconds:9.1f} s (summed over its jobs)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/default/benchmarks")
