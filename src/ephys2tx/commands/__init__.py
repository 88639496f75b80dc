"""CLI command groups; cli.py wires them together."""
