"""The ``ioth`` command and its sub-commands."""
