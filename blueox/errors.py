"""Exceptions raised by BlueOx."""


class Error(Exception):
    """Base class for BlueOx errors."""
