"""The test kit: everything the suites in tests/ and the benchmarks in bench/ share, in one place.

The integration harness (a daemon on the real Docker engine and the stand-ins), the real-tunnel
bed, the fault-injecting Docker proxy, the invariant checker and the kill rounds, the in-memory
Docker, acexy's calls and the viewer front over them, and the smaller helpers more than one suite
uses. Shared code lives here and not in a `test_*.py` file, so that it is seen as shared, changes
on its own terms, and pytest never collects a test module twice because something imported it:
tests/unit/test_test_module_imports.py forbids importing a test module, and forbids the daemon
(orchestrator/, reconcilers/) importing this kit. Nothing here is collected as a test.
"""
