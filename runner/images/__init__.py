"""Container images for vLLM benchmarks: the catalog, Dockerfile rendering, build, pull, inspect."""
