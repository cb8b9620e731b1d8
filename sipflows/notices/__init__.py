"""Notices: rendering, calendar parts, the idempotent ledger and dispatch."""
