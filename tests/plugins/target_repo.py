"""Shared fixtures for tests (target_repo). Filled in by the area that owns it."""
