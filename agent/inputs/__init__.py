"""Inputs: file tail, Unix socket and loopback HTTP; each hands batches to the spool writer."""
