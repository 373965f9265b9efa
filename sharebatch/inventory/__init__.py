"""S3 Inventory as a source of objects: a report found, checked and read in listing order.

``locate`` finds the newest report under a prefix (or the one named) and checks its
``manifest.json`` against ``manifest.checksum``; ``rows`` turns a data file's CSV.gz or Parquet
rows into ``ObjectRef``s as a listing gives them; ``sort`` puts them in key order in bounded
memory; ``reader`` (``Inventories``) reads each report once for every prefix that needs it.
"""
