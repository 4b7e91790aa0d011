"""Run directories as records: the schema, vLLM output parsers and the run-directory reader."""
