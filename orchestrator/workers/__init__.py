"""The long-running tasks that observe and act: Docker events in (`event_source`), plans out
(`reconcile_loop`), actions against Docker (`executor`), engine probes (`readiness`,
`stream_checks`)."""
