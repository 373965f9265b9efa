"""The only package that talks to S3: gateway, listing, preflight, probes, SigV4, retries."""
