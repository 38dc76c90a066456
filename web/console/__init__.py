"""The operators' console: a server-rendered back office for admins at /console (issue 25).

Every action calls the same core services as /api/v1/admin, so rules, audit rows and events
are the same. It is a plain Flask blueprint, not part of the API's OpenAPI document.
"""

from __future__ import annotations

from web.console.app import init_app

__all__ = ["init_app"]
