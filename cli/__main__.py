"""``python -m coordfit_cli`` runs the same app as the ``coordfit`` script."""

from coordfit_cli.main import main

main()
