"""Spark entry points (spark-submit jobs/<job>.py), configuration and the Spark session factory."""
