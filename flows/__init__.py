"""Prefect flows: thin wrappers over the ``sipflows`` domain library."""
