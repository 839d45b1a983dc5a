"""In-memory stand-ins for the daemon's seams, for the fast tests (the real ones stay the truth)."""
