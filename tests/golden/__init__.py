"""Golden vectors (see regen.py)."""
