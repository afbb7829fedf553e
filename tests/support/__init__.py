"""Real services for the tests: PostgreSQL, Redis, a moto S3 server, Celery workers."""
