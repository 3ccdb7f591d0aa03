"""Datasets: streaming JSONL validation and statistics (see validate.validate_stream)."""
