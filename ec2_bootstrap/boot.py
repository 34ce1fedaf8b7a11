"""Placeholder replaced by the bootstrap issue."""
