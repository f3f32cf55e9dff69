"""Spark adapters around the pure-Python annotators: worker-local caches, batching, error capture."""
