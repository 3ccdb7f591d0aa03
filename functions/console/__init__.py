"""The `ministudio` command line's commands (the entry point in functions/cli.py only parses arguments)."""
