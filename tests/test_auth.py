"""Token attacks against the API: each is a 401, only a real token of our pool and client passes."""

import base64
import json
import time

import jwt
import pytest
from moto.utilities.utils import load_resource

from local_stack.aws import client
from tests.conftest import PASSWORD

MOTO_PRIVATE_JWK = load_resource("cognitoidp/resources/jwks-private.json")


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def sign_with_pool_key(claims: dict) -> str:
    """Signed with the very key moto's pools use: only the claims are wrong."""
    key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(MOTO_PRIVATE_JWK))
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": MOTO_PRIVATE_JWK["kid"]})


def get_photos(api, token):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return api.http.get("/photos", headers=headers)


def test_valid_id_and_access_tokens_pass(api, make_user):
    user = make_user()
    for token in (user.id_token, user.access_token):
        response = get_photos(api, token)
        assert response.status_code == 200, response.body
        assert response.json_body == {"photos": [], "next_cursor": None}


def test_missing_token(api):
    response = get_photos(api, None)
    assert response.status_code == 401
    assert response.json_body["error"] == "unauthorized"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "", "Bearer"])
def test_garbage_tokens(api, token):
    response = api.http.get("/photos", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert set(response.json_body) == {"error", "message"}


def test_expired_token(api, make_user):
    claims = claims_of(make_user().id_token)
    claims.update(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    response = get_photos(api, sign_with_pool_key(claims))
    assert response.status_code == 401
    assert response.json_body["error"] == "token_expired"


def test_alg_none(api, make_user):
    claims = claims_of(make_user().id_token)
    token = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert get_photos(api, token).status_code == 401


def test_hs256_forged_with_public_key(api, make_user, aws_stack):
    """The classic confusion attack: HMAC keyed with the pool's public key."""
    claims = claims_of(make_user().id_token)
    public_n = MOTO_PRIVATE_JWK["n"].encode()
    header = b64({"alg": "HS256", "typ": "JWT", "kid": MOTO_PRIVATE_JWK["kid"]})
    import hashlib
    import hmac

    body = f"{header}.{b64(claims)}"
    signature = (
        base64.urlsafe_b64encode(hmac.new(public_n, body.encode(), hashlib.sha256).digest()).decode().rstrip("=")
    )
    assert get_photos(api, f"{body}.{signature}").status_code == 401


def test_tampered_payload(api, make_user):
    victim, attacker = make_user("victim"), make_user("attacker")
    header, _, signature = attacker.id_token.split(".")
    claims = claims_of(attacker.id_token)
    claims["sub"] = victim.sub
    assert get_photos(api, f"{header}.{b64(claims)}.{signature}").status_code == 401


def test_token_from_another_pool(api, aws_stack):
    cognito = client("cognito-idp", aws_stack.aws_endpoint_url)
    pool = cognito.create_user_pool(PoolName="other-pool", UsernameAttributes=["email"])["UserPool"]
    other = cognito.create_user_pool_client(
        UserPoolId=pool["Id"],
        ClientName="other",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )
    client_id = other["UserPoolClient"]["ClientId"]
    cognito.sign_up(ClientId=client_id, Username="intruder@example.com", Password=PASSWORD)
    cognito.admin_confirm_sign_up(UserPoolId=pool["Id"], Username="intruder@example.com")
    tokens = cognito.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "intruder@example.com", "PASSWORD": PASSWORD},
    )
    response = get_photos(api, tokens["AuthenticationResult"]["IdToken"])
    assert response.status_code == 401
    assert "another user pool" in response.json_body["message"]


def test_token_for_another_client(api, aws_stack, make_user):
    user = make_user()
    cognito = client("cognito-idp", aws_stack.aws_endpoint_url)
    other = cognito.create_user_pool_client(
        UserPoolId=aws_stack.user_pool_id,
        ClientName="not-ours",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )
    tokens = cognito.initiate_auth(
        ClientId=other["UserPoolClient"]["ClientId"],
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": user.email, "PASSWORD": PASSWORD},
    )
    for token in (tokens["AuthenticationResult"]["IdToken"], tokens["AuthenticationResult"]["AccessToken"]):
        response = get_photos(api, token)
        assert response.status_code == 401
        assert "another app client" in response.json_body["message"]


def test_wrong_token_use(api, make_user):
    claims = claims_of(make_user().id_token)
    claims["token_use"] = "refresh"
    assert get_photos(api, sign_with_pool_key(claims)).status_code == 401


def test_unknown_key_id(api, make_user):
    claims = claims_of(make_user().id_token)
    key = jwt.algorithms.RSAAlgorithm.from_jwk(json.dumps(MOTO_PRIVATE_JWK))
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "not-a-key-of-the-pool"})
    response = get_photos(api, token)
    assert response.status_code == 401
    assert "unknown key" in response.json_body["message"]


def test_health_needs_no_token(api):
    response = api.http.get("/health")
    assert response.status_code == 200
    body = response.json_body
    assert body["status"] == "ok"
    assert body["dependencies"] == {"store": {"ok": True}, "s3": {"ok": True}}


@pytest.mark.parametrize(
    "method, path, headers",
    [
        ("GET", "/photos", {}),  # 401 from the token check
        ("GET", "/photos/" + "0" * 32, None),  # 404 raised by the view
        ("POST", "/search", None),  # 400: no body
    ],
)
def test_errors_carry_the_cors_headers_a_browser_needs_to_read_them(api, make_user, method, path, headers):
    if headers is None:
        headers = make_user().headers
    response = api.http.request(method, path, headers=headers, body=b"")
    assert response.status_code >= 400 and set(response.json_body) >= {"error", "message"}
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
