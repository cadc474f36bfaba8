"""Ending an account's sign-ins, and deleting an account.

Signing out everywhere (``POST /me/sign-out``), disabling (the operators' ``disable-user``) and a
password reset (Cognito's post-confirmation trigger) mark the user's tokens issued until now as
void, then sign the user out at Cognito (refresh tokens stop working).

Deleting, one sequence for ``DELETE /me`` and the operators' ``purge-user``:

1. A tombstone for the user's ``sub``: from then on the API refuses every token of the
   account (an ID token stays valid at Cognito until it expires; the tombstone does not).
2. Cognito's global sign-out: refresh tokens stop working, no new tokens are issued.
3. The data: objects under ``photos/{sub}/``, ``thumbs/{sub}/``, ``keys/{sub}/``, photo and face records (Album).
4. The Cognito user itself.

Each step is idempotent and tolerates a user Cognito no longer knows, so a repeated or
interrupted deletion can simply run again.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from chalicelib.album import Album
from chalicelib.clock import now_ms
from chalicelib.observability import logger
from chalicelib.records import User
from chalicelib.stores.account_store import AccountStore

if TYPE_CHECKING:
    from types_boto3_cognito_idp import CognitoIdentityProviderClient


class Accounts:
    """An account's life beyond its photos: deletion, sign-out everywhere, disabling."""

    def __init__(
        self, account_store: AccountStore, album: Album, cognito: CognitoIdentityProviderClient, user_pool_id: str
    ):
        self.account_store, self.album, self.cognito, self.user_pool_id = account_store, album, cognito, user_pool_id

    def delete(self, user: User) -> dict:
        """Delete the account: its tokens refused, its Cognito user, photos, people and objects gone."""
        self.account_store.add_tombstone(user.sub)
        if user.username:
            self._cognito("admin_user_global_sign_out", user.username)
        removed = self.album.delete_account_data(user)
        self.account_store.forget_revocation(user.sub)
        if user.username:
            self._cognito("admin_delete_user", user.username)
        logger.info("account deleted", extra=dict(removed, user=user.sub))
        return removed

    def sign_out_everywhere(self, sub: str, username: str | None) -> None:
        """Every token issued until now is refused by the API, and no refresh token works."""
        self.account_store.revoke_tokens(sub, now_ms())
        if username:
            self._cognito("admin_user_global_sign_out", username)
        logger.info("signed out everywhere", extra={"user": sub})

    def disable(self, sub: str, username: str) -> None:
        """The operators' switch: Cognito refuses to sign the user in, the API refuses their tokens."""
        self._cognito("admin_disable_user", username)
        self.sign_out_everywhere(sub, username)

    def _cognito(self, action: str, username: str) -> None:
        with contextlib.suppress(self.cognito.exceptions.UserNotFoundException):  # a repeated deletion
            getattr(self.cognito, action)(UserPoolId=self.user_pool_id, Username=username)
