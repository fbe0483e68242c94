"""Importers: other alarm systems' configurations as beamwatch checks."""
