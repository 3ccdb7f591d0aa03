"""Local emulation of the AWS pieces the platform stands on: moto, redis-server, SQS event sources."""
