"""Credentials for Marathon, read from the environment as Linkerd 1 reads them.

- ``DCOS_SERVICE_ACCOUNT_CREDENTIAL``: a DC/OS service-account secret, a JSON object
  ``{"login_endpoint", "private_key", "scheme": "RS256", "uid"}``. The namer logs in by POSTing
  ``{"uid": <uid>, "token": <JWT {"uid": <uid>} signed RS256 with private_key>}`` to
  ``login_endpoint``, gets ``{"token": ...}`` back, and sends ``Authorization: token=<token>``
  on every request. A 401 with a token logs in again (once per request): tokens expire.
- ``MARATHON_HTTP_AUTH_CREDENTIAL``: HTTP basic auth. Linkerd sends
  ``Authorization: Basic <value>``, so the value is ``base64("user:password")``. turnout also
  accepts the plain ``user:password`` form (a ``:`` cannot occur in base64) and encodes it.

When both are set, the service account wins (as in Linkerd).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from turnout.api import TurnoutError

DCOS_ENV = "DCOS_SERVICE_ACCOUNT_CREDENTIAL"
BASIC_ENV = "MARATHON_HTTP_AUTH_CREDENTIAL"


class MarathonCredentialError(TurnoutError):
    """A credential in the environment cannot be used (the namer is not built)."""


def basic_authorization(credential: str) -> str:
    """The ``Authorization`` value for ``MARATHON_HTTP_AUTH_CREDENTIAL``'s ``credential``."""
    credential = credential.strip()
    if not credential:
        raise MarathonCredentialError(f"{BASIC_ENV} is set but empty")
    if ":" in credential:  # user:password, not yet encoded
        credential = base64.b64encode(credential.encode("utf-8")).decode("ascii")
    return f"Basic {credential}"


@dataclass(frozen=True)
class ServiceAccount:
    """A DC/OS service-account secret (``DCOS_SERVICE_ACCOUNT_CREDENTIAL``)."""

    login_endpoint: str
    private_key: str
    uid: str
    scheme: str = "RS256"

    @classmethod
    def from_json(cls, text: str) -> ServiceAccount:
        """Parse the secret; :class:`MarathonCredentialError` unless it has a login endpoint,
        a private key, a uid and the RS256 scheme (the only one DC/OS and Linkerd use)."""
        try:
            data = json.loads(text)
        except ValueError as e:
            raise MarathonCredentialError(f"{DCOS_ENV} is not valid JSON: {e}") from None
        if not isinstance(data, dict):
            raise MarathonCredentialError(f"{DCOS_ENV} must be a JSON object")
        fields: dict[str, Any] = {
            k: data.get(k) for k in ("login_endpoint", "private_key", "scheme", "uid")
        }
        missing = [k for k, v in fields.items() if not isinstance(v, str) or not v]
        if missing:
            raise MarathonCredentialError(f"{DCOS_ENV} lacks {', '.join(missing)}")
        if fields["scheme"] != "RS256":
            raise MarathonCredentialError(
                f"{DCOS_ENV}: scheme {fields['scheme']!r} is not supported (only RS256)"
            )
        return cls(fields["login_endpoint"], fields["private_key"], fields["uid"])

    def login_body(self) -> dict[str, str]:
        """The JSON body POSTed to the login endpoint (a fresh signature each time)."""
        try:
            import jwt  # PyJWT, with cryptography for RS256
        except ImportError:  # pragma: no cover - depends on the installation
            raise MarathonCredentialError(
                f"{DCOS_ENV} needs PyJWT and cryptography: "
                "pip install 'turnout-namer-marathon[dcos]'"
            ) from None
        try:
            token = jwt.encode({"uid": self.uid}, self.private_key, algorithm="RS256")
        except Exception as e:  # a malformed key: say so without showing it
            raise MarathonCredentialError(
                f"{DCOS_ENV}: cannot sign with private_key ({type(e).__name__})"
            ) from None
        return {"uid": self.uid, "token": token}


@dataclass(frozen=True)
class Credentials:
    """What the client sends: nothing, a fixed basic ``Authorization``, or a service account."""

    basic: str | None = None
    account: ServiceAccount | None = None

    @property
    def kind(self) -> str:
        return "dcos" if self.account else "basic" if self.basic else "none"


def credentials_from_env(environ: Mapping[str, str]) -> Credentials:
    """The credentials the environment gives (see the module docstring)."""
    secret = environ.get(DCOS_ENV)
    if secret:
        account = ServiceAccount.from_json(secret)
        account.login_body()  # fail now, at start-up, when the key or PyJWT is unusable
        return Credentials(account=account)
    basic = environ.get(BASIC_ENV)
    if basic is not None:
        return Credentials(basic=basic_authorization(basic))
    return Credentials()


def describe(credentials: Credentials) -> dict[str, Any]:
    """What ``/namer_state`` shows about the credentials (never the secret itself)."""
    if credentials.account is not None:
        return {"kind": "dcos", "uid": credentials.account.uid}
    return {"kind": credentials.kind}
