"""Dynamic batching: merges sequences from many requests into length-aware runtime batches."""
