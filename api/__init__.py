"""Sluice's HTTP API: the drop endpoint and the document API (``create_app``)."""

from api.app import create_app

__all__ = ["create_app"]
