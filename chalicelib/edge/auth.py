"""Who is calling: Cognito JWT verification and the caller's identity.

API Gateway's Cognito authorizer checks tokens in the cloud, but ``chalice
local`` and direct Lambda invocations do not, so the app always verifies the
bearer token itself: RS256 signature against the pool's JWKS (cached), issuer,
expiry, ``token_use`` and the app client.  Checking twice in the cloud costs
well under a millisecond and removes any way to misconfigure it.  Cognito's own ID
and access tokens stay valid until they expire (an hour), whatever happens to the
account, so the app also refuses the tokens of a deleted account (``is_deleted``:
the account's tombstone) and those issued before the account was signed out
everywhere, disabled or had its password reset (``revoked_before``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import jwt
from jwt import PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError

from chalicelib.errors import NotAuthenticated, Unavailable
from chalicelib.records import User

# Cognito subs are UUIDs; anything else must never become part of an S3 key.
_SUB_PATTERN = re.compile(r"^[A-Za-z0-9-]{1,128}$")


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token from ``Authorization: Bearer <jwt>`` (a bare token is accepted too)."""
    value = (headers.get("authorization") or headers.get("Authorization") or "").strip()
    if not value:
        raise NotAuthenticated("missing Authorization header")
    scheme, _, rest = value.partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else value
    if not token or " " in token:
        raise NotAuthenticated("malformed Authorization header")
    return token


class TokenVerifier:
    """Verifies Cognito ID and access tokens: signature, issuer, audience, expiry, and account state."""

    def __init__(
        self,
        issuer: str,
        client_ids: Iterable[str],
        jwks_url: str,
        leeway: int = 5,
        is_deleted: Callable[[str], bool] = lambda sub: False,
        revoked_before: Callable[[str], datetime | None] = lambda sub: None,
    ):
        self.issuer = issuer
        self.client_ids = frozenset(client_ids)
        self.leeway = leeway
        self.is_deleted = is_deleted
        self.revoked_before = revoked_before
        self._jwks = PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=3600, timeout=5)

    def verify(self, token: str, allow_deleted: bool = False) -> User:
        """The caller, from a valid token; ``allow_deleted`` lets a deleted account's token
        through (only to repeat the deletion)."""
        user = self._verify_token(token)
        if not allow_deleted and self.is_deleted(user.sub):
            raise NotAuthenticated("this account has been deleted", code="account_deleted")
        before = self.revoked_before(user.sub)
        # ``iat`` has whole seconds: a token of the revocation's own second is refused too.
        if before is not None and user.issued_at <= int(before.timestamp()):
            raise NotAuthenticated("this sign-in has ended; sign in again", code="token_revoked")
        return user

    def _verify_token(self, token: str) -> User:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise NotAuthenticated("token is not a valid JWT") from None
        if header.get("alg") != "RS256":
            raise NotAuthenticated("token must be signed with RS256")
        try:
            signing_key = self._jwks.get_signing_key(header.get("kid") or "")
        except PyJWKClientConnectionError:
            raise Unavailable("the identity provider's keys cannot be fetched right now") from None
        except PyJWKClientError:
            raise NotAuthenticated("token was signed by an unknown key") from None
        try:
            claims = jwt.decode(
                token,
                signing_key.key,
                algorithms=["RS256"],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "iss", "sub", "token_use"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("token has expired", code="token_expired") from None
        except jwt.InvalidIssuerError:
            raise NotAuthenticated("token was issued by another user pool") from None
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"token rejected: {exc}") from exc
        return self._user_from_claims(claims)

    def _user_from_claims(self, claims: Mapping) -> User:
        token_use = claims.get("token_use")
        if token_use == "id":
            client_id = claims.get("aud")
        elif token_use == "access":
            client_id = claims.get("client_id")
        else:
            raise NotAuthenticated("token_use must be 'id' or 'access'")
        if not isinstance(client_id, str) or client_id not in self.client_ids:  # a list is another app's
            raise NotAuthenticated("token was issued to another app client")
        sub = str(claims.get("sub", ""))
        if not _SUB_PATTERN.match(sub):
            raise NotAuthenticated("token subject is malformed")
        username = claims.get("cognito:username") or claims.get("username")
        return User(sub=sub, username=username, email=claims.get("email"), issued_at=int(claims["iat"]))
