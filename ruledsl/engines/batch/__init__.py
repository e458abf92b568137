"""The batch engine: log frames (frames), rules compiled to lazy polars queries
(polars_backend), evaluate/audit over a frame (engine) and over an archive read from
disk (archive).
"""
