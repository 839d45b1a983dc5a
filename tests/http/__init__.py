"""HTTP API tests: the real aiohttp app on a real (never-run) Daemon and state store."""
