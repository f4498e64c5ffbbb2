"""The lake's formats and layout, with no Dagster: Delta tables (stage, commit, merge,
recorded commit metadata), the lake log and its transactions, versioned artifact folders
with ``LATEST``, housekeeping, and the embedding store. Assets, the service, training and
benchmarks reach stored data through these modules."""
