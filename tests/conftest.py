"""Shared pytest set-up: nothing global beyond making `tests` importable as a package."""
