"""The fault suite: the daemon under crashes, a failing or hanging Docker, bad edits and churn,
each fault followed by a check of what must still hold (testkit/invariants.py)."""
