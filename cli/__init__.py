"""The coordfit command line: a thin Typer skin over the coordfit library."""
