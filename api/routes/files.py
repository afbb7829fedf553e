"""``/files/{key}``: the local object store's pre-signed downloads.

On the embedded default there is no bucket to sign links for, so the API plays
its part: ``LocalStore.presign_get`` signs key, expiry, name and type with the
secret key, and this route checks the signature and expiry, then streams the
file as an attachment. No bearer token: the signature is the credential, as
with S3's pre-signed URLs.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from api.errors import ApiError, error_responses
from api.services import ServicesDep
from pipeline.storage.disposition import attachment
from pipeline.storage.local import LocalStore

router = APIRouter(tags=["files"])


FILE_RESPONSES = {200: {"content": {"application/octet-stream": {}}},
                  **error_responses(403, 404, 422)}


@router.head("/files/{key:path}", response_class=FileResponse, responses=FILE_RESPONSES,
             operation_id="head_signed_file")
@router.get("/files/{key:path}", response_class=FileResponse, responses=FILE_RESPONSES,
            operation_id="get_signed_file")
def signed_file(
    key: str,
    expires: Annotated[str, Query()],
    name: Annotated[str, Query()],
    type: Annotated[str, Query()],  # noqa: A002 - the signed URL's parameter name
    signature: Annotated[str, Query()],
    services: ServicesDep,
) -> FileResponse:
    """The object at ``key``, when the link's signature is valid and it has not expired."""
    store = services.runtime.store
    if not isinstance(store, LocalStore):
        raise ApiError(404, "not_found", "downloads come from the bucket's own links")

    expected = store.signature(key, {"expires": expires, "name": name, "type": type})
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise ApiError(403, "bad_signature", "the link's signature is not valid")
    if not expires.isdigit() or int(expires) < time.time():
        raise ApiError(403, "expired", "the link has expired")

    path = store.local_path(key)
    if path is None:
        raise ApiError(404, "not_found", "the object is not in the store")
    return FileResponse(path, media_type=type, headers={
        "Content-Disposition": attachment(name),
        "X-Content-Type-Options": "nosniff",
        # An HTML or SVG original must not run, even if a browser is told to show it.
        "Content-Security-Policy": "sandbox",
        "Cache-Control": "private, no-store",
    })
