"""The daemon's state: the store every worker writes through (`store`), the streams the proxy
reports (`streams`), the create circuit breaker (`breaker`) and where an engine is reached
(`endpoints`)."""
