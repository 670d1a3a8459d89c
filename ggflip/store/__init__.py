"""What every mode writes to disk: atomic writes, cache keys and advisory locks.

A file written here is either complete or absent.
"""
