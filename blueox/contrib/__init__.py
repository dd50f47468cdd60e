"""Integrations of BlueOx with web frameworks and task queues."""
