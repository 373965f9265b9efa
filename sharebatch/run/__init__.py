"""One run of a manifest: plan, select, sign, the pipeline, writing bundles, the report."""
