"""Metrics and traces shared by the API and the workers (framework-free)."""
