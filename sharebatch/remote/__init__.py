"""Run folders on S3: ``s3://`` OUT values, publishing a local folder there, fetching one back.

``uri`` parses and checks ``s3://bucket/prefix/``; ``folders`` publishes a finished local folder
(every file private, encrypted as the bucket says, ``summary.json`` last so its presence means
complete), fetches every object under a prefix into a private local folder (keys that would
escape it refused), and tells whether a remote folder is complete. Every request goes through
``sharebatch.s3``'s gateway.
"""
