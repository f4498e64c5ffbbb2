"""What the assets are given and how they report: the Dagster resources (Spark, the lake),
the IO managers over :mod:`storage`, and the measurement and plot helpers behind every
asset's metadata. :mod:`orchestration` assembles these with the assets into definitions."""
