"""`python -m beamwatch.sim …`: the same commands as `beamwatch sim …`."""

from .cli import app

app(prog_name="beamwatch sim")
