"""``python -m cli``: the same as the ``nyc311`` console script."""

from cli import main

main()
