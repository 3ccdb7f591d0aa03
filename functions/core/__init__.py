"""Settings, domain models, errors, ids and resource names shared by the code and the CDK stacks."""
