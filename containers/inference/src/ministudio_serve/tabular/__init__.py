"""Seed 004's classical models (the `tabular` profile): scikit-learn and XGBoost versions per tenant in S3, loaded
only from safe formats, inputs validated by a pydantic model generated from each version's feature schema,
predictions cached in Redis and logged to the server's SQLite request log."""
