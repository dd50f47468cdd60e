"""Celery integration."""
