"""The HTTP API: what proxies, dashboards and operators read, and the proxy's calls. Handlers
only read and write the state store through an `ApiContext`; they never wait on Docker."""
