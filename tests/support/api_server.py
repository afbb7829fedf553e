"""A real Sluice API on loopback for tests: uvicorn in a thread, one app per server."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import uvicorn

from api import create_app
from pipeline.settings import Settings
from tests.support.services import free_port

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FINAL = ("stored", "duplicate", "failed")


class ApiServer:
    def __init__(self, settings: Settings, **overrides: Any):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings.model_copy(update={
            "api_port": self.port, "public_url": self.url, **overrides})
        self.app = create_app(self.settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.client = httpx.Client(base_url=self.url, headers=AUTH, timeout=60)

    def start(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.client.close()
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def upload(self, name: str, content: bytes, **fields: Any) -> httpx.Response:
        data = {key: str(value) for key, value in fields.items()}
        return self.client.post("/api/documents/upload/",
                                files={"file": (name, content)}, data=data)

    def wait_final(self, document_id: str, timeout: float = 120.0) -> dict[str, Any]:
        """Poll the document until its status is final, as a client would."""
        deadline = time.monotonic() + timeout
        while True:
            document = self.client.get(f"/api/documents/{document_id}/").json()
            if document["status"] in FINAL:
                return document
            if time.monotonic() > deadline:
                raise AssertionError(f"document {document_id} still {document['status']}")
            time.sleep(0.1)


def serve(stack: Any, **overrides: Any) -> Any:
    """Start an API for ``stack``'s settings; the caller stops it."""
    return ApiServer(stack.settings, **overrides).start()
