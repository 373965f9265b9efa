"""CloudFront signed links: keys, policies, signing and reading back; no network, no S3."""
