"""Tests for oxd, the collector daemon (mirrors blueox/oxd)."""
