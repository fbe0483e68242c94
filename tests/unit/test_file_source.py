"""The files source on real files in tmp_path: file:, disk:, log:, read:.

The clock is fake where the value depends on it (ages, windows); file times are
set with os.utime relative to it. The full disk is a real 1 MiB tmpfs (we are root
in CI; elsewhere the test says it cannot mount)."""

import json
import os
import shutil
import subprocess

import pytest

from beamwatch.checks.evaluate import Check, CheckInput
from beamwatch.clock import FakeClock
from beamwatch.config import parse_config
from beamwatch.model import Severity
from beamwatch.sources.files import FileSource
from beamwatch.sources.filescan import RACY_NS, GlobScan
from beamwatch.sources.logtail import MAX_LINE


def source(tmp_path, *checks: dict, clock=None):
    text = json.dumps({"beamline": "I04", "storage": {"url": f"sqlite:///{tmp_path}/bw.db"},
                       "checks": list(checks)})
    return FileSource("files", parse_config(text), clock or FakeClock())


async def poll(src, check_id):
    return await src.poll(src.checks[check_id])


def judged(src, check_id, sample):
    inp = CheckInput(started=0.0)
    inp.update(sample)
    return Check(src.checks[check_id], []).evaluate(inp, sample.received + 60)


def touch(path, mtime):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))


def settle(*dirs):
    """Directory mtimes older than the racy window, as on a data tree at rest."""
    old = (os.stat(dirs[0]).st_mtime_ns - 2 * RACY_NS) / 1e9
    for d in dirs:
        os.utime(d, (old, old))


# --- file: ------------------------------------------------------------------------------


async def test_age_of_the_newest_file_and_major_when_files_stop(tmp_path):
    clock = FakeClock()
    data = tmp_path / "data"
    touch(data / "visit1" / "img_00001.cbf", clock.now() - 400)
    touch(data / "visit2" / "img_00001.cbf", clock.now() - 100)
    touch(data / "visit2" / "img_00002.cbf", clock.now() - 30)
    src = source(tmp_path, {"id": "images", "file": f"{data}/*/*.cbf",
                            "age": {"minor": "1m", "major": "5m"}}, clock=clock)
    sample = await poll(src, "images")
    assert sample.connected and sample.value == pytest.approx(30)
    assert judged(src, "images", sample).severity == Severity.OK
    clock.advance(300)  # nothing new for five and a half minutes
    sample = await poll(src, "images")
    assert sample.value == pytest.approx(330)
    assert judged(src, "images", sample).severity == Severity.MAJOR


async def test_no_matching_file_and_missing_directory_are_reasons(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("x")
    src = source(tmp_path, {"id": "images", "file": f"{tmp_path}/data/*.cbf"},
                 {"id": "gone", "file": f"{tmp_path}/nowhere/*/*.cbf", "measure": "count"})
    sample = await poll(src, "images")
    assert not sample.connected and sample.error == f"no file matches {tmp_path}/data/*.cbf"
    sample = await poll(src, "gone")
    assert not sample.connected and "nowhere does not exist" in sample.error


async def test_count_and_growth_over_the_window(tmp_path):
    clock = FakeClock()
    for i in range(5):
        touch(tmp_path / "d" / f"a{i}.h5", clock.now() - 3600)  # an old run
    for i in range(3):
        touch(tmp_path / "d" / f"b{i}.h5", clock.now() - 20 * i)  # now, 20 s, 40 s ago
    (tmp_path / "d" / ".b9.h5.partial").write_bytes(b"")  # a file still being copied in
    src = source(tmp_path, {"id": "n", "file": f"{tmp_path}/d/*.h5", "measure": "count"},
                 {"id": "g", "file": f"{tmp_path}/d/*.h5", "measure": "growth",
                  "window": "30s", "below": {"major": 1}}, clock=clock)
    assert (await poll(src, "n")).value == 8
    sample = await poll(src, "g")
    assert sample.value == 2  # b0 and b1 are within the last 30 s
    clock.advance(60)
    sample = await poll(src, "g")
    assert sample.value == 0 and judged(src, "g", sample).severity == Severity.MAJOR


def test_steady_state_lists_only_directories_that_changed(tmp_path):
    root = tmp_path / "data"
    for d in range(20):
        for f in range(10):
            (root / f"run{d:02}").mkdir(parents=True, exist_ok=True)
            (root / f"run{d:02}" / f"img{f}.cbf").write_bytes(b"")
    settle(root, *root.iterdir())
    scan = GlobScan(f"{root}/*/*.cbf")
    first = scan.scan()
    assert (first.count, first.dirs_listed, first.dirs_seen) == (200, 21, 21)
    again = scan.scan()
    assert (again.count, again.dirs_listed) == (200, 0)  # stat() of 21 dirs, nothing read
    (root / "run07" / "img99.cbf").write_bytes(b"")
    after = scan.scan()
    assert after.count == 201 and after.dirs_listed == 1
    assert after.newest_path == str(root / "run07" / "img99.cbf")
    shutil.rmtree(root / "run03")
    assert scan.scan().count == 191


async def test_a_file_still_being_written_is_young(tmp_path):
    clock = FakeClock()
    image = tmp_path / "d" / "img.cbf"
    touch(image, clock.now() - 100)
    settle(tmp_path / "d")
    src = source(tmp_path, {"id": "age", "file": f"{tmp_path}/d/*.cbf"}, clock=clock)
    assert (await poll(src, "age")).value == pytest.approx(100)
    os.utime(image, (clock.now() - 1, clock.now() - 1))  # written into: the dir is unchanged
    assert (await poll(src, "age")).value == pytest.approx(1)


# --- disk: ------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB filesystem (tmpfs)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs for the full-disk test: {done.stderr}")
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_a_filling_disk_goes_minor_then_major(tmp_path, small_disk):
    src = source(tmp_path, {"id": "disk", "disk": str(small_disk),
                            "free_below": {"minor": "50%", "major": "10%"}},
                 {"id": "bytes", "disk": str(small_disk), "free_below": {"major": "100KiB"}})
    sample = await poll(src, "disk")
    assert sample.value == pytest.approx(100) and judged(src, "disk", sample).severity == 0
    (small_disk / "a").write_bytes(b"x" * 600 * 1024)
    sample = await poll(src, "disk")
    assert judged(src, "disk", sample).severity == Severity.MINOR
    with open(small_disk / "b", "wb") as fh:  # fill it to the last block
        with pytest.raises(OSError):
            fh.write(b"x" * 1024 * 1024)
            fh.flush()
    sample = await poll(src, "disk")
    assert sample.value < 1 and judged(src, "disk", sample).severity == Severity.MAJOR
    sample = await poll(src, "bytes")
    assert sample.value < 100 * 1024 and judged(src, "bytes", sample).severity == Severity.MAJOR


async def test_disk_limits_around_the_real_free_space_of_tmp_path(tmp_path):
    fs = os.statvfs(tmp_path)
    free = 100 * fs.f_bavail / fs.f_blocks
    src = source(tmp_path, {"id": "tight", "disk": str(tmp_path),
                            "free_below": {"major": f"{min(free + 1, 100):.3f}%"}},
                 {"id": "loose", "disk": str(tmp_path),
                  "free_below": {"major": f"{max(free - 1, 0):.3f}%"}})
    tight, loose = await poll(src, "tight"), await poll(src, "loose")
    assert tight.value == pytest.approx(free, abs=0.5)
    assert judged(src, "tight", tight).severity == Severity.MAJOR
    assert judged(src, "loose", loose).severity == Severity.OK


async def test_disk_on_a_file_or_a_missing_path_says_so(tmp_path):
    (tmp_path / "f").write_text("x")
    src = source(tmp_path, {"id": "file", "disk": str(tmp_path / "f")},
                 {"id": "gone", "disk": str(tmp_path / "gone")})
    sample = await poll(src, "file")
    assert not sample.connected and "is a file, not a directory" in sample.error
    sample = await poll(src, "gone")
    assert not sample.connected and "does not exist" in sample.error
    assert judged(src, "gone", sample).severity == Severity.INVALID


# --- log: -------------------------------------------------------------------------------


def append(path, text: str | bytes):
    with open(path, "ab") as fh:
        fh.write(text.encode() if isinstance(text, str) else text)


async def test_log_counts_new_matches_within_the_window(tmp_path):
    clock = FakeClock()
    log = tmp_path / "det.log"
    log.write_text("ERROR old, before we started\n")
    src = source(tmp_path, {"id": "errors", "log": str(log), "match": "ERROR",
                            "window": "5m", "above": {"major": 2}}, clock=clock)
    assert (await poll(src, "errors")).value == 0  # a tail starts at the end
    append(log, "INFO ok\nERROR a\nERROR b\nERROR c (no newline yet")
    sample = await poll(src, "errors")
    assert sample.value == 2
    append(log, ")\n")
    clock.advance(60)
    sample = await poll(src, "errors")
    assert sample.value == 3 and judged(src, "errors", sample).severity == Severity.MAJOR
    clock.advance(290)  # a and b (read 350 s ago) leave the 5-minute window; c stays
    assert (await poll(src, "errors")).value == 1
    clock.advance(60)
    assert (await poll(src, "errors")).value == 0


async def test_log_rotated_by_rename_reads_the_old_file_to_its_end(tmp_path):
    log = tmp_path / "det.log"
    log.write_text("")
    src = source(tmp_path, {"id": "e", "log": str(log), "match": "ERROR", "window": "1h"})
    await poll(src, "e")
    append(log, "ERROR 1\n")
    assert (await poll(src, "e")).value == 1
    append(log, "ERROR 2 written just before rotation\n")
    log.rename(tmp_path / "det.log.1")
    sample = await poll(src, "e")  # rotated, the new file not there yet
    assert not sample.connected and "does not exist" in sample.error
    log.write_text("ERROR 3 in the new file\n")
    assert (await poll(src, "e")).value == 3
    append(log, "ERROR 4\n")
    assert (await poll(src, "e")).value == 4


async def test_log_copytruncate_starts_again_from_the_top(tmp_path):
    log = tmp_path / "det.log"
    log.write_text("boot\n" * 100)
    src = source(tmp_path, {"id": "e", "log": str(log), "match": "ERROR", "window": "1h"},
                 {"id": "last", "log": str(log), "match": "ERROR", "measure": "last"})
    await poll(src, "e")
    await poll(src, "last")
    shutil.copy(log, tmp_path / "det.log.1")
    with open(log, "r+b") as fh:
        fh.truncate(0)
    append(log, "ERROR after truncate\n")
    assert (await poll(src, "e")).value == 1
    assert (await poll(src, "last")).value == "ERROR after truncate"


async def test_binary_and_runaway_lines_are_read_not_raised(tmp_path):
    log = tmp_path / "det.log"
    log.write_text("")
    src = source(tmp_path, {"id": "last", "log": str(log), "match": "ERR", "measure": "last"},
                 {"id": "n", "log": str(log), "match": "ERR", "window": "1h"})
    await poll(src, "last")
    await poll(src, "n")
    append(log, b"\xff\xfe\x00ERR binary \xc3\x28\n")
    sample = await poll(src, "last")
    assert sample.connected and sample.value == "\ufffd\ufffd\x00ERR binary \ufffd("
    append(log, b"ERR " + b"x" * (3 * MAX_LINE) + b" tail-that-is-skipped\nERR short\n")
    assert (await poll(src, "n")).value == 3
    assert (await poll(src, "last")).value == "ERR short"


async def test_last_match_is_known_from_the_start(tmp_path):
    log = tmp_path / "det.log"
    log.write_text("ERROR earlier\nINFO fine\n")
    src = source(tmp_path, {"id": "last", "log": str(log), "match": "ERROR",
                            "measure": "last", "when": "'ERROR' in value"})
    sample = await poll(src, "last")
    assert sample.value == "ERROR earlier"
    assert judged(src, "last", sample).severity == Severity.MAJOR


async def test_log_that_is_a_directory_says_so(tmp_path):
    src = source(tmp_path, {"id": "e", "log": str(tmp_path), "match": "x"})
    sample = await poll(src, "e")
    assert not sample.connected and "is not a regular file" in sample.error


# --- read: ------------------------------------------------------------------------------


async def test_read_a_value_from_json_and_yaml(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"detector": {"temps": [21.5, 24.0]}}))
    (tmp_path / "s.yaml").write_text("robot:\n  state: Fault\n  code: 40\n")
    src = source(tmp_path, {"id": "t", "read": str(tmp_path / "s.json"),
                            "json": "max(detector.temps)", "above": {"major": 23}},
                 {"id": "r", "read": str(tmp_path / "s.yaml"), "json": "robot.code"})
    sample = await poll(src, "t")
    assert sample.value == 24.0 and judged(src, "t", sample).severity == Severity.MAJOR
    assert (await poll(src, "r")).value == 40


async def test_read_bad_documents_give_reasons(tmp_path):
    (tmp_path / "bad.json").write_text('{"a": 1,}')
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "ok.json").write_text('{"a": 1}')
    src = source(tmp_path, {"id": "bad", "read": str(tmp_path / "bad.json")},
                 {"id": "bin", "read": str(tmp_path / "bin.json")},
                 {"id": "gone", "read": str(tmp_path / "gone.json")},
                 {"id": "none", "read": str(tmp_path / "ok.json"), "json": "b"})
    reasons = {cid: (await poll(src, cid)).error for cid in src.checks}
    assert reasons["bad"].endswith("bad.json is not valid JSON: Expecting property name "
                                  "enclosed in double quotes at line 1 column 9")
    assert reasons["bin"].endswith("is not text (UTF-8)")
    assert reasons["gone"].endswith("gone.json does not exist")
    assert reasons["none"] == f"json: 'b' finds nothing in {tmp_path}/ok.json"


async def test_a_jmespath_that_cannot_apply_to_the_document_says_why(tmp_path):
    (tmp_path / "ok.json").write_text('{"state": "RUNNING"}')
    src = source(tmp_path, {"id": "m", "read": str(tmp_path / "ok.json"), "json": "max(state)"})
    error = (await poll(src, "m")).error
    assert error.startswith("json: 'max(state)': In function max(), invalid type for value")


def test_a_bad_jmespath_is_refused_at_load(tmp_path):
    from beamwatch.config import ConfigError

    bad = r"checks\[0\]: json: 'a\[\[' is not a JMESPath expression"
    with pytest.raises(ConfigError, match=bad):
        source(tmp_path, {"id": "expr", "read": str(tmp_path / "ok.json"), "json": "a[["})


def test_window_goes_with_log_and_file_only(tmp_path):
    from beamwatch.config import ConfigError

    with pytest.raises(ConfigError, match="window: goes with log: or file:, not disk:"):
        source(tmp_path, {"id": "d", "disk": str(tmp_path), "window": "1m"})


def test_relative_paths_are_next_to_the_config_file(tmp_path):
    from beamwatch.config import load_config

    (tmp_path / "conf").mkdir()
    cfg = tmp_path / "conf" / "bw.yaml"
    cfg.write_text(f"""
beamline: I04
storage: {{url: "sqlite:///{tmp_path}/bw.db"}}
checks:
  - {{id: images, file: "data/*/*.cbf"}}
  - {{id: disk, disk: /data}}
  - {{id: log, log: ../logs/det.log, match: ERROR}}
""")
    paths = {c.id: c.file or c.disk or c.log for c in load_config(cfg).checks}
    assert paths["images"] == f"{tmp_path}/conf/data/*/*.cbf"
    assert paths["disk"] == "/data"
    assert paths["log"] == f"{tmp_path}/conf/../logs/det.log"
