"""beamwatch: watches a beamline and calls the right person, once."""

__version__ = "0.1.0"
