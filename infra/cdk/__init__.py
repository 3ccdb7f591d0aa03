"""The CDK app: `cdk.json` runs `infra/cdk/app.py`; stacks/ and constructs/ hold what it builds."""
