"""The `vvstore` command line: parses, calls the `cas` library, renders."""
