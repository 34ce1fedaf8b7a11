"""The instance metadata service through IMDSv2, with the standard library only.

A token by PUT, kept and renewed a minute before it expires, then each GET with it. The service
is link-local: never through a proxy. The wake's end, the idle checker's keep-awake tag and the
spot watcher read it; none of them imports requests for it (the wake's end counts its imports).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

IMDS_URL = "http://169.254.169.254"


class Metadata:
    """GETs from the metadata service at `url`. Errors are the caller's: OSError (HTTPError,
    URLError, timeouts), ValueError or http.client.HTTPException."""

    def __init__(self, url: str, timeout: float = 2.0, token_ttl: int = 60) -> None:
        self.base = url.rstrip("/")
        self.timeout = timeout
        self.token_ttl = token_ttl
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._token = ""
        self.renew_at = 0.0

    def get(self, path: str, limit: int = 4096) -> bytes | None:
        """The body of `path` (at most `limit` bytes); None when `path` itself is 404 (no tag, no
        spot notice). A 404 to the token's PUT (a wrong endpoint) is an error like any other."""
        request = urllib.request.Request(  # noqa: S310  (the metadata service's own URL)
            f"{self.base}{path}", headers={"X-aws-ec2-metadata-token": self.token()}
        )
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return bytes(response.read(limit))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            if error.code == 401:  # the token expired early (a clock jump): a new one next time
                self._token = ""
            raise

    def token(self) -> str:
        """The session token, taken again when it is due (or was refused)."""
        if not self._token or time.monotonic() >= self.renew_at:
            request = urllib.request.Request(  # noqa: S310
                f"{self.base}/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(self.token_ttl)},
            )
            with self.opener.open(request, timeout=self.timeout) as response:
                self._token = response.read(4096).decode()
            self.renew_at = time.monotonic() + max(self.token_ttl - 60, 0)
        return self._token
