"""Shared fixtures for tests (standin). Filled in by the area that owns it."""
