"""``unlearn report``: placeholder wiring; the report command is defined here."""


def add_command(sub) -> None:
    """Register the ``report`` sub-command on the ``unlearn`` parser."""
