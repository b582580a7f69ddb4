"""The ``duet`` command line: main.py builds it; each other module is one group of subcommands."""
