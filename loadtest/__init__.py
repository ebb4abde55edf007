"""The load test: locustfile (the traffic mix, for any deployment) and run (a bounded local run
against 127.0.0.1, and its summary)."""
