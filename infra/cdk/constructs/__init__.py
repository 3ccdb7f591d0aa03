"""Reusable pieces of the stacks. Imported as `infra.cdk.constructs`, never as a top-level `constructs`,
which is the CDK's own package: `app.py` keeps its own folder off `sys.path` for that reason."""
