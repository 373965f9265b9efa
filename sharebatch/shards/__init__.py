"""Shards: one run split over machines (``run --shard K/N``) and merged back (``merge``)."""
