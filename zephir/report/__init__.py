"""The paper's tables and figures, rendered from results files (never from a model in memory)."""
