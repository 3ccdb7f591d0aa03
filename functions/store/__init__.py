"""The only place that speaks pymongo, redis or S3."""
