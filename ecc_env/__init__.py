"""Gymnasium environment for edge-cloud split and redundancy-skip decisions."""
