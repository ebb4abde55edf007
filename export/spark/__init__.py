"""The build on Apache Spark (`edgeperso export --engine spark`): what grows with the number of
events runs on Spark, from the same definitions the one-machine build uses. A step that looks
at one row at a time is the one-machine function itself, run a partition at a time
(`mapInPandas`); a step that looks across rows is written in Spark and checked against the
one-machine step by the parity tests (tests/export/spark/)."""
