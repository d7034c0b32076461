"""The durable SQLite spool: events, per-output cursors, input offsets, quarantine and DLQ."""
