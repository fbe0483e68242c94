"""A facility: many beamlines, each its own beamwatch, sharing one PostgreSQL.

Each beamline's store lives in its own schema (docs/decisions/0012); the
running engines write what a facility view needs and cannot compute itself (who
is on call) into their stores, and `beamwatch facility` reads every schema.
"""
