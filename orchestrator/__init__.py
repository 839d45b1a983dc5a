"""acestream-orchestrator: the daemon (I/O, Docker, HTTP). Decisions live in `reconcilers`."""

__version__ = "0.1.0"
