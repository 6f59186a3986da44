"""Sink role: detection events -> a store (idempotent on event id) + Prometheus metrics."""
