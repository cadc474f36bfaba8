"""Signing in to the API's Cognito pool and keeping the tokens (mode 600, never in a URL).

The CLI needs only the API's address: Cognito's endpoint and app client come from the
API's own ``web/config.json``, as for the web client.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests


def state_dir() -> Path:
    """Where tokens and upload journals live: $MEMSTUDIO_HOME, else ~/.config/memstudio."""
    return Path(os.environ.get("MEMSTUDIO_HOME", Path.home() / ".config" / "memstudio"))


class CliError(Exception):
    """A failure to report in one line, with exit status 1."""


def _claims(token: str) -> dict:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def client_config(api: str) -> dict:
    """The API's client configuration (its user pool and client id)."""
    try:
        response = requests.get(f"{api.rstrip('/')}/web/config.json", timeout=15)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as exc:
        raise CliError(f"cannot reach the API at {api}: {exc}") from exc


def cognito(config: dict, action: str, body: dict) -> dict:
    """One Cognito API call; its answer (SystemExit with Cognito's words on an error)."""
    response = requests.post(
        config["cognitoEndpoint"],
        json=body,
        timeout=30,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"AWSCognitoIdentityProviderService.{action}",
        },
    )
    try:
        data = response.json() if response.content else {}
    except ValueError:  # an error page, not Cognito's JSON
        data = {}
    if response.status_code >= 400:
        raise CliError(f"{action}: {data.get('message') or data.get('Message') or response.status_code}")
    return data


@dataclass
class Session:
    """A signed-in user's tokens for one API, kept on disk."""

    api: str
    email: str
    id_token: str
    refresh_token: str
    expires_at: float
    access_token: str = ""

    @property
    def sub(self) -> str:
        """The user's id."""
        return _claims(self.id_token)["sub"]

    @staticmethod
    def path(api: str) -> Path:
        """Where the session for ``api`` is kept."""
        name = base64.urlsafe_b64encode(api.rstrip("/").encode()).decode().rstrip("=")
        return state_dir() / f"session-{name}.json"

    def save(self) -> None:
        """Keep the session on disk, readable by its owner only."""
        path = self.path(self.api)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(self.__dict__, handle)

    @classmethod
    def load(cls, api: str) -> Session:
        """The kept session for ``api`` (SystemExit when not signed in)."""
        path = cls.path(api)
        if not path.exists():
            raise CliError(f"not signed in to {api}: run 'memstudio login EMAIL' first")
        return cls(**json.loads(path.read_text()))

    @classmethod
    def login(cls, api: str, email: str, password: str) -> Session:
        """Sign in with a password."""
        config = client_config(api)
        result = cognito(
            config,
            "InitiateAuth",
            {
                "AuthFlow": "USER_PASSWORD_AUTH",
                "ClientId": config["clientId"],
                "AuthParameters": {"USERNAME": email, "PASSWORD": password},
            },
        )
        tokens = result["AuthenticationResult"]
        session = cls(
            api.rstrip("/"),
            email,
            tokens["IdToken"],
            tokens["RefreshToken"],
            _claims(tokens["IdToken"])["exp"],
            tokens.get("AccessToken", ""),
        )
        session.save()
        return session

    def token(self) -> str:
        """A valid ID token, refreshed when it is about to expire."""
        if time.time() > self.expires_at - 60:
            self.refresh()
        return self.id_token

    def refresh(self) -> None:
        """New tokens from the refresh token."""
        config = client_config(self.api)
        result = cognito(
            config,
            "InitiateAuth",
            {
                "AuthFlow": "REFRESH_TOKEN_AUTH",
                "ClientId": config["clientId"],
                "AuthParameters": {"REFRESH_TOKEN": self.refresh_token},
            },
        )
        self.id_token = result["AuthenticationResult"]["IdToken"]
        self.access_token = result["AuthenticationResult"].get("AccessToken", self.access_token)
        self.expires_at = _claims(self.id_token)["exp"]
        self.save()

    def logout(self) -> None:
        """Revoke this session's refresh token (RevokeToken), then forget the session. A pool
        without RevokeToken (moto's, in the local stack) gets a global sign-out instead."""
        config = client_config(self.api)
        try:
            cognito(config, "RevokeToken", {"ClientId": config["clientId"], "Token": self.refresh_token})
        except CliError:
            if self.access_token:
                cognito(config, "GlobalSignOut", {"AccessToken": self.access_token})
        self.path(self.api).unlink(missing_ok=True)

    def call(self, method: str, path: str, body: dict | None = None, params: dict | None = None):
        """An API call; the JSON answer, or CliError with the API's message."""
        for attempt in (1, 2):
            response = requests.request(
                method,
                f"{self.api}/{path}",
                json=body,
                params=params,
                timeout=120,
                headers={"Authorization": f"Bearer {self.token()}"},
            )
            if response.status_code == 401 and attempt == 1:
                self.refresh()
                continue
            break
        if response.status_code == 204:
            return None
        data = response.json() if response.content else {}
        if response.status_code >= 400:
            raise CliError(f"{method} /{path}: {response.status_code} {data.get('message', '')}".rstrip())
        return data
