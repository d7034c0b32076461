"""Outputs: one module per destination plus the drain framework they share."""
