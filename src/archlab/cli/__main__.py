"""``python -m archlab.cli``: the same as the ``archlab`` command."""

from archlab.cli import main

if __name__ == "__main__":
    main()
