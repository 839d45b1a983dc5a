"""Pure decision logic: plain synchronous functions from (desired, observed, now) to actions.

Nothing in this package performs I/O, logs, uses asyncio or imports the daemon, aiodocker or
aiohttp; `make test` checks that (tests/unit/test_purity.py).
"""

from reconcilers.health import is_visible, staleness, visible_engines
from reconcilers.pool import engine_spec_hash, plan

__all__ = ["engine_spec_hash", "is_visible", "plan", "staleness", "visible_engines"]
