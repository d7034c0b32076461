"""Strict validators of exported documents against the official schema data in ../shared/schemas."""
