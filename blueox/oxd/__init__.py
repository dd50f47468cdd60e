"""oxd, the BlueOx collector daemon: one module per service."""
