"""Files benchmark: what one `file:` poll costs on a data tree of a million files.

Creates DIRS × FILES empty files under a temporary directory in /tmp
(data/runNNNN/img_NNNNN.cbf), then times the glob `data/*/*.cbf`:

- baseline: glob.glob() of the whole tree (what a naive poll would do, without
  even the stat() that an age needs), once;
- first scan: the incremental GlobScan with nothing cached (for `age`, which
  stat()s every file, and for `count`, which does not);
- steady state: the same scan again with nothing changed (one stat() per
  directory), median and max of --polls polls;
- one new file: a file added to one directory, then a poll (that directory is
  listed again);
- through FileSource: the `age` check polled as `beamwatch run` polls it (worker
  thread, Sample), steady state.

Wall time and CPU time (this process) per poll. The tree is deleted afterwards.
Results: bench/results/files.json.

    .venv/bin/python bench/files.py                    # 1000 dirs x 1000 files
    .venv/bin/python bench/files.py --dirs 100 --files 100
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from beamwatch.sources.filescan import RACY_NS, GlobScan  # noqa: E402


def make_tree(root: Path, dirs: int, files: int) -> float:
    t0 = time.perf_counter()
    for d in range(dirs):
        run = root / "data" / f"run{d:04}"
        run.mkdir(parents=True)
        base = str(run)
        for f in range(files):
            os.close(os.open(f"{base}/img_{f:05}.cbf", os.O_CREAT | os.O_WRONLY, 0o644))
    return time.perf_counter() - t0


def timed(fn) -> tuple[float, float, object]:
    """(wall ms, CPU ms, result)."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3, result


def steady(fn, polls: int) -> dict:
    walls, cpus = [], []
    for _ in range(polls):
        wall, cpu, _ = timed(fn)
        walls.append(wall)
        cpus.append(cpu)
    return {"wall_ms_median": round(statistics.median(walls), 2),
            "wall_ms_max": round(max(walls), 2),
            "cpu_ms_median": round(statistics.median(cpus), 2)}


def through_source(pattern: str, polls: int) -> dict:
    from beamwatch.config import parse_config
    from beamwatch.sources.files import FileSource

    config = parse_config(json.dumps({"beamline": "BENCH", "checks": [
        {"id": "images", "file": pattern, "age": {"major": "5m"}}]}))
    src = FileSource("files", config)

    async def run() -> tuple[float, dict]:
        first = time.perf_counter()
        sample = await src.poll(src.checks["images"])
        first_ms = (time.perf_counter() - first) * 1e3
        assert sample.connected, sample.error
        walls, cpus = [], []
        for _ in range(polls):
            w0, c0 = time.perf_counter(), time.process_time()
            await src.poll(src.checks["images"])
            walls.append((time.perf_counter() - w0) * 1e3)
            cpus.append((time.process_time() - c0) * 1e3)
        return first_ms, {"wall_ms_median": round(statistics.median(walls), 2),
                          "wall_ms_max": round(max(walls), 2),
                          "cpu_ms_median": round(statistics.median(cpus), 2)}

    first_ms, steady_state = asyncio.run(run())
    return {"first_poll_wall_ms": round(first_ms, 1), "steady": steady_state}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dirs", type=int, default=1000)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=50)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "files.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="beamwatch-bench-files-", dir="/tmp"))
    try:
        created = make_tree(root, args.dirs, args.files)
        total = args.dirs * args.files
        print(f"created {total:,} files in {created:.1f} s", file=sys.stderr)
        time.sleep(RACY_NS / 1e9 + 0.5)  # every directory settled, as on a tree at rest
        pattern = f"{root}/data/*/*.cbf"
        result: dict = {"files": total, "dirs": args.dirs, "create_s": round(created, 1)}
        wall, cpu, found = timed(lambda: len(glob.glob(pattern)))
        assert found == total
        result["baseline_glob"] = {"wall_ms": round(wall, 1), "cpu_ms": round(cpu, 1)}
        for measure, need in (("age", True), ("count", False)):
            scan = GlobScan(pattern, need_mtimes=need)
            wall, cpu, totals = timed(scan.scan)
            assert totals.count == total
            entry = {"first_wall_ms": round(wall, 1), "first_cpu_ms": round(cpu, 1),
                     "steady": steady(scan.scan, args.polls)}
            new = root / "data" / f"run{args.dirs // 2:04}" / "img_new.cbf"
            new.write_bytes(b"")
            wall, cpu, totals = timed(scan.scan)
            assert totals.count == total + 1 and totals.dirs_listed == 1
            entry["one_new_file"] = {"wall_ms": round(wall, 2), "cpu_ms": round(cpu, 2)}
            new.unlink()
            result[measure] = entry
            print(measure, json.dumps(entry), file=sys.stderr)
        result["file_source_age"] = through_source(pattern, args.polls)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "filesystem": "ext4 (/tmp), page cache warm (tree just created)"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
