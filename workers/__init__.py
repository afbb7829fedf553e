"""The Celery side: the app, and thin tasks that call into ``pipeline``."""
