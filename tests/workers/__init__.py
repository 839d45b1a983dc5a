"""The observe/act half (event source, executor, reconcile loop) on an in-memory Docker: fast
tables of event orderings and pool scenarios, no Docker engine needed."""
