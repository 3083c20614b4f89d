"""Export task records: the lifecycle rules (shared) and the stores that keep them."""
