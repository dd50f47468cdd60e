"""Django integration."""
