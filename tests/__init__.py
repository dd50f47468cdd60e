"""Tests for BlueOx."""
