"""Helpers shared by the test suites (real servers on loopback, fixtures data)."""
