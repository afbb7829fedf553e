"""Bearer tokens from SLUICE_API_TOKENS, compared in constant time.

With no token configured the API refuses every request: an API that is open by
accident is worse than one that must be switched on.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sluice"'}
FINGERPRINT_HEX_CHARS = 12

bearer_scheme = HTTPBearer(auto_error=False, description="A token from SLUICE_API_TOKENS.")


def fingerprint(token: str) -> str:
    """A short, stable name for a token that reveals nothing usable about it."""
    return hashlib.sha256(token.encode()).hexdigest()[:FINGERPRINT_HEX_CHARS]


@dataclass(frozen=True)
class Caller:
    """Who made the request: which token, named by its fingerprint."""

    token_fingerprint: str


class TokenCheck:
    def __init__(self, tokens: tuple[str, ...]):
        self._tokens = [(token.encode(), fingerprint(token)) for token in tokens if token]

    def identify(self, presented: str | None) -> Caller:
        """The caller for ``presented``; raise a 401 ApiError when it is no token of ours."""
        if not self._tokens:
            raise ApiError(401, "no_tokens_configured",
                           "the API is closed: set SLUICE_API_TOKENS to allow requests",
                           CHALLENGE)
        if not presented:
            raise ApiError(401, "unauthorized",
                           "send 'Authorization: Bearer <token>'", CHALLENGE)

        # Every token is compared, match or not, so timing says nothing about which.
        given, found = presented.encode(), None
        for token, name in self._tokens:
            if hmac.compare_digest(given, token):
                found = name
        if found is None:
            raise ApiError(401, "unauthorized", "the token is not valid", CHALLENGE)
        return Caller(found)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Caller:
    check: TokenCheck = request.app.state.token_check
    return check.identify(credentials.credentials if credentials else None)


CallerDep = Annotated[Caller, Depends(require_token)]
