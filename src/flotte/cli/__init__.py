"""The ``flotte`` / ``fleetctl`` command line."""
