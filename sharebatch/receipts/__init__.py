"""Receipts: what happened to the links after they were issued, read from S3's access logs."""
