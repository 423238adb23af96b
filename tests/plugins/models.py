"""Shared fixtures for tests (models). Filled in by the area that owns it."""
