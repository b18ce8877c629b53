"""Built-in rules, one per module; discovered through the ``trainlint.rules`` entry point."""
