"""Serving and deployment helpers."""
