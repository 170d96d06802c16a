"""The command line: the Typer app, one module per command group, and the one place a result
becomes text or JSON. Errors become exit codes only here (controller.cli.main)."""
