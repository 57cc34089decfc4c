"""The command-line layer: typer options, printing and exit codes. Nothing below it prints."""
