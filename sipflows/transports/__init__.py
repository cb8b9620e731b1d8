"""Transports: where a notice goes. Chosen by ``Settings.transport``."""
