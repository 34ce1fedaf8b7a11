"""Login to the Jupyter server (jupyter_server_config.py's identity provider).

The team logs in with the password; the internal API token (the idle checker's, scripts') is
accepted only in an `Authorization: token ...` header, never from a URL, where it would end up in
browser history, proxies' logs and Referer headers.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.identity import PasswordIdentityProvider


class HeaderTokenIdentityProvider(PasswordIdentityProvider):
    """Password login for people; the API token only from the Authorization header."""

    def get_token(self, handler: Any) -> str | None:
        match = self.auth_header_pat.match(handler.request.headers.get("Authorization", ""))
        return match.group(2) if match else ""
