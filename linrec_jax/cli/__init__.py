"""The command-line programs: `linrec-prepare`, `linrec-train`,
`linrec-recommend` and `linrec-benchmark` (see pyproject.toml)."""
