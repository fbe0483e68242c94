"""The sim's files on disk: a data directory the detector writes images into and the
detector's log, for beamwatch's `file:` and `log:` checks.

    DATA_DIR/images/runNNNN/img_NNNNN.cbf   an image every IMAGE_EVERY s, 100 per run
    DATA_DIR/detector.log                   an INFO line per image

Two faults drive it, flags on the sim-control IOC like every fault:
`collection-stalled` (FAULT:COLLECTION) stops the images, `detector-errors`
(FAULT:DETECTOR) adds an ERROR line every second. The supervisor monitors the
flags; nothing here does Channel Access.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

IMAGE_EVERY = 2.0
IMAGES_PER_RUN = 100
DEFAULT_DATA_DIR = Path("/tmp/beamwatch-demo-files")  # where examples/i04-demo.yaml looks


class DataCollection:
    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.images = self.data_dir / "images"
        self.log_path = self.data_dir / "detector.log"
        self.stalled = False
        self.errors = False
        self._n = 0
        self._task: asyncio.Task | None = None

    def on_flag(self, name: str, text: str) -> None:
        """A fault flag's new value ("On"/"Off" or 1/0)."""
        on = text in ("On", "1")
        if name == "COLLECTION":
            self.stalled = on
        elif name == "DETECTOR":
            self.errors = on

    def start(self) -> None:
        self.images.mkdir(parents=True, exist_ok=True)
        self._n = sum(1 for _ in self.images.glob("*/*.cbf"))  # continue a previous run
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        tick = 0
        while True:
            if self.errors:
                self._log("ERROR", "frame readout failed: FPGA timeout on module 3")
            if tick % int(IMAGE_EVERY) == 0 and not self.stalled:
                self._image()
            tick += 1
            await asyncio.sleep(1.0)

    def _image(self) -> None:
        run = self.images / f"run{self._n // IMAGES_PER_RUN:04}"
        run.mkdir(exist_ok=True)
        name = f"img_{self._n % IMAGES_PER_RUN:05}.cbf"
        (run / name).write_bytes(b"###CBF: simulated image\n")
        self._n += 1
        self._log("INFO", f"wrote {run.name}/{name}")

    def _log(self, level: str, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with self.log_path.open("a") as fh:
            fh.write(f"{stamp} {level} {text}\n")
