"""A C2SP tlog-witness an oversight body runs: it cosigns the log's checkpoints only if
each is consistent with every checkpoint it cosigned before (no split view, no rollback)."""
