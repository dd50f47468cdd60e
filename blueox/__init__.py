"""BlueOx: application logging and data collection."""
