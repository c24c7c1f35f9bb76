"""``python -m flotte``: the same CLI as the ``flotte`` command."""

from flotte.cli.main import main

main()
