"""Read finished benchmark run directories and turn them into comparable records and tables."""
