"""Operator actions that act for a user without the user's token, with the stage's own
settings (the same environment variables the Lambda functions read)."""

from __future__ import annotations

import os
from pathlib import Path

from chalicelib.records import User
from chalicelib.services import Services
from chalicelib.settings import Settings

from .session import CliError


def stage_settings(local_stack_file: Path) -> Settings:
    """The environment's settings when it names a bucket (a cloud stage), else the local stack's."""
    if os.environ.get("PHOTO_BUCKET"):
        return Settings.from_env()
    if not local_stack_file.exists():
        raise CliError(
            "set the stage's environment (PHOTO_BUCKET, COGNITO_USER_POOL_ID, STORE_BACKEND, ...) "
            "or start the local stack"
        )
    from local_stack.aws import StackInfo

    env = StackInfo.read(local_stack_file).app_environment()
    os.environ.update(env)  # boto3 credentials and endpoint for moto
    return Settings.from_env(env)


def _found(services: Services, username: str) -> User:
    """The pool's user by user name or e-mail; a CliError when there is none."""
    cognito, pool = services.cognito, services.settings.user_pool_id
    try:
        found = cognito.admin_get_user(UserPoolId=pool, Username=username)
    except cognito.exceptions.UserNotFoundException:
        raise CliError(f"no user {username!r} in pool {pool}") from None
    sub = next(a["Value"] for a in found["UserAttributes"] if a["Name"] == "sub")
    return User(sub=sub, username=found["Username"])


def purge_user(settings: Settings, username: str) -> dict:
    """Delete a user's photos, thumbnails, key photos, faces and Cognito account: the same
    sequence as DELETE /me (chalicelib.accounts), so a failure half-way can simply be run again."""
    services = Services(settings)
    user = _found(services, username)
    removed = services.accounts.delete(user)
    return dict(removed, sub=user.sub)


def disable_user(settings: Settings, username: str) -> str:
    """Cognito refuses to sign the user in and the API refuses every token they hold (the
    console's Disable alone leaves their tokens working for up to an hour); their sub."""
    services = Services(settings)
    user = _found(services, username)
    services.accounts.disable(user.sub, username)
    return user.sub
