"""``python -m alignkit.cli ...`` runs the command line (as the ``alignkit`` script does)."""

from alignkit.cli import run

if __name__ == "__main__":
    run()
