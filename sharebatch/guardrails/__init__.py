"""Guardrails: bucket-policy statements that make S3 itself enforce what a manifest intends."""
