"""What the records say: filters, the index, comparisons, statistics and chart data."""
