"""Deployment code (CDK). Not part of the Lambda bundle."""
