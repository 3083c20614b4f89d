"""dbexport: export a live PostgreSQL or MySQL cluster to Parquet, as Aurora's export to S3 does."""
