"""The `passrt` command line."""
