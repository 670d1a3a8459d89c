"""What every mode writes to disk: atomic writes, cache keys and advisory locks; and reading a
file the user named, its failures as one error naming the file.

A file written here is either complete or absent.
"""
