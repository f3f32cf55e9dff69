"""Spark itself: the session factory (with Delta and the local JVM's start-up settings), the jars `make setup`
fetched, the class-data-sharing archive, Spark's console logging (log4j2.properties), the progress line,
and the one door to pyspark's private parts (internals.py)."""
