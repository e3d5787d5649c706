"""ZePHiR."""
