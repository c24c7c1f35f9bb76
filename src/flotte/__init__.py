"""flotte: run systemd-style unit files across a cluster of machines, as CoreOS fleet did."""

__version__ = "0.1.0"
