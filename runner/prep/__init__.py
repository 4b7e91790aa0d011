"""`bench-prep`: quantized checkpoints for the benchmarks (llm-compressor, amd-quark)."""
