"""Recorded and synthetic bandwidth traces: readers, transfer-time integration, trace sets."""
