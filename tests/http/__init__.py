"""HTTP API tests: the real aiohttp app on a real state store, with no Docker."""
