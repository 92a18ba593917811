"""The ``symphony`` command line."""
