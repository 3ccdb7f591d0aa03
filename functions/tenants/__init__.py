"""Tenants, API keys, authentication and per-tenant rate limits."""
