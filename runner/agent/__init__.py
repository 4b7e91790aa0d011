"""The agent: runs one job next to vLLM and writes its run directory (standard library only)."""
