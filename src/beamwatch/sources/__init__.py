"""Source backends: ca (Channel Access), soft (in-memory)."""
