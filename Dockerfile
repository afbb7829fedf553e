FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline pipeline
COPY workers workers
COPY watchers watchers
COPY cli cli
COPY api api
RUN pip install --no-cache-dir .
USER nobody
