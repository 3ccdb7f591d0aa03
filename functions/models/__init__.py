"""The models a tenant can use: the base catalogue and its own fine-tuned models (their adapters in S3)."""
