"""The daemon's state, split by owner: the observed world (`store`), work in flight (`ledger`),
the proxy's demand (`demand`) and the daemon's counters (`telemetry`); the streams the proxy
reports (`streams`) and their `journal`, the create circuit breaker (`breaker`) and where an
engine is reached (`endpoints`)."""
