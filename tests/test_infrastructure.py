"""The infrastructure template: valid CloudFormation, and consistent with the Chalice stages."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infrastructure" / "resources.yaml"


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(path)], capture_output=True, text=True, timeout=300
    )


def test_template_passes_cfn_lint():
    result = cfn_lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_stage_points_at_the_templates_resources(stage):
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]
    env = config["environment_variables"]
    text = TEMPLATE.read_text()
    assert env["PHOTO_BUCKET"] == f"memory-studio-{stage}-photos"
    assert "memory-studio-${Stage}-photos" in text
    assert env["PHOTO_EVENTS_QUEUE"] == f"memory-studio-{stage}-photo-events"
    assert env["PHOTO_EVENTS_QUEUE_URL"].endswith(f"/memory-studio-{stage}-photo-events")
    assert "memory-studio-${Stage}-photo-events" in text
    assert env["MONGODB_SECRET_ID"] == f"memory-studio/{stage}/atlas" and "memory-studio/${Stage}/atlas" in text
    policy = (ROOT / ".chalice" / config["iam_policy_file"]).read_text()
    for resource in (
        f"memory-studio-{stage}-photos/users/*",
        f"memory-studio-{stage}-photo-events",
        f"memory-studio/{stage}/atlas",
        f"endpoint/{env['FACE_ENDPOINT_NAME']}",
    ):
        assert resource in policy, resource
    # The indexer's timeout fits six times in the queue's visibility timeout.
    assert 6 * config["lambda_functions"]["index_photos"]["lambda_timeout"] <= 720
    # People jobs: the queue the regrouper reads, which the indexer and the API send to.
    assert env["PEOPLE_JOBS_QUEUE"] == f"memory-studio-{stage}-people-jobs"
    assert env["PEOPLE_JOBS_QUEUE_URL"].endswith(f"/memory-studio-{stage}-people-jobs")
    assert "memory-studio-${Stage}-people-jobs" in text and f"memory-studio-{stage}-people-jobs" in policy
    assert 6 * config["lambda_functions"]["group_people"]["lambda_timeout"] <= 5400


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_stage_throttling_is_applied_to_the_deployed_api(stage, aws_stack, monkeypatch):
    """Against moto's API Gateway: the stage every method answers on gets the stage's limits."""
    from infrastructure import throttling
    from local_stack.aws import client

    apigateway = client("apigateway", aws_stack.aws_endpoint_url)
    api = apigateway.create_rest_api(name=f"memory-studio-{stage}")
    root = apigateway.get_resources(restApiId=api["id"])["items"][0]["id"]
    apigateway.put_method(restApiId=api["id"], resourceId=root, httpMethod="GET", authorizationType="NONE")
    apigateway.put_integration(restApiId=api["id"], resourceId=root, httpMethod="GET", type="MOCK")
    apigateway.create_deployment(restApiId=api["id"], stageName="api")
    for key, value in aws_stack.app_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(throttling.deployed, "rest_api_id", lambda s: api["id"])
    assert throttling.main(["--stage", stage]) == 0
    assert throttling.main(["--stage", stage]) == 0  # idempotent
    settings = apigateway.get_stage(restApiId=api["id"], stageName="api")["methodSettings"]["*/*"]
    limits = throttling.stage_limits(stage)
    assert settings["throttlingRateLimit"] == limits["rate_limit"]
    assert settings["throttlingBurstLimit"] == limits["burst_limit"]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_api_gateways_own_errors_answer_in_the_apps_shape_with_cors(stage, aws_stack, monkeypatch):
    """The authorizer's 401/403 and API Gateway's 429/5xx never reach the app: gateway responses
    give them the CORS headers and the {"error", "message"} body (against moto's API Gateway)."""
    from infrastructure import gateway_responses
    from local_stack.aws import client

    apigateway = client("apigateway", aws_stack.aws_endpoint_url)
    api = apigateway.create_rest_api(name=f"memory-studio-{stage}-errors")
    for key, value in aws_stack.app_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(gateway_responses.deployed, "rest_api_id", lambda s: api["id"])
    assert gateway_responses.main(["--stage", stage]) == 0
    assert gateway_responses.main(["--stage", stage]) == 0  # idempotent
    answers = {r["responseType"]: r for r in apigateway.get_gateway_responses(restApiId=api["id"])["items"]}
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]
    origin = config["environment_variables"]["CORS_ALLOW_ORIGIN"]  # the app's own CORS origin
    for response_type in ("DEFAULT_4XX", "DEFAULT_5XX"):
        answer = answers[response_type]
        assert answer["responseParameters"]["gatewayresponse.header.Access-Control-Allow-Origin"] == f"'{origin}'"
        assert "Authorization" in answer["responseParameters"]["gatewayresponse.header.Access-Control-Allow-Headers"]
        # What API Gateway renders, with the values it substitutes: the app's error shape.
        rendered = (
            answer["responseTemplates"]["application/json"]
            .replace("$context.error.responseType.toLowerCase()", "unauthorized")
            .replace("$context.error.messageString", json.dumps("Unauthorized"))
        )
        assert json.loads(rendered) == {"error": "unauthorized", "message": "Unauthorized"}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_stage_policy_allows_every_aws_call_the_functions_make(stage):
    """Each AWS call of the code, as IAM evaluates it (moto's policy evaluator): a missing action
    would fail in the cloud only (the presigned key upload's tagging, /health's HeadBucket)."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]
    env = config["environment_variables"]
    policy = IAMPolicy((ROOT / ".chalice" / config["iam_policy_file"]).read_text())
    bucket = f"arn:aws:s3:::{env['PHOTO_BUCKET']}"
    sub = "0b1e9a3c-1111-2222-3333-444455556666"
    calls = [  # (action, resource, request context) and where the code makes the call
        ("s3:PutObject", f"{bucket}/users/{sub}/photos/a.jpg", None),  # presigned photo upload
        ("s3:PutObject", f"{bucket}/users/{sub}/keys/k.jpg", None),  # presigned key upload...
        ("s3:PutObjectTagging", f"{bucket}/users/{sub}/keys/k.jpg", None),  # ...with its expiry tag
        ("s3:GetObject", f"{bucket}/users/{sub}/photos/a.jpg", None),  # indexer, presigned views
        ("s3:DeleteObject", f"{bucket}/users/{sub}/thumbs/a.jpg", None),  # deletion
        ("s3:ListBucket", bucket, {"s3:prefix": f"users/{sub}/"}),  # account deletion
        ("sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:us-east-1:1:endpoint/{env['FACE_ENDPOINT_NAME']}", None),
        (
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:us-east-1:1:secret:{env['MONGODB_SECRET_ID']}-AbCdEf",
            None,
        ),
        ("cognito-idp:AdminDeleteUser", env["COGNITO_USER_POOL_ARN"], None),
        ("cognito-idp:AdminUserGlobalSignOut", env["COGNITO_USER_POOL_ARN"], None),
        (
            "sqs:SendMessage",
            f"arn:aws:sqs:us-east-1:1:{env['PHOTO_EVENTS_QUEUE']}",
            None,
        ),  # reindex (a batch is authorised as SendMessage)
        ("sqs:ReceiveMessage", f"arn:aws:sqs:us-east-1:1:{env['PHOTO_EVENTS_QUEUE']}", None),  # event source
        ("sqs:SendMessage", f"arn:aws:sqs:us-east-1:1:{env['PEOPLE_JOBS_QUEUE']}", None),  # regrouping requests
        ("sqs:ReceiveMessage", f"arn:aws:sqs:us-east-1:1:{env['PEOPLE_JOBS_QUEUE']}", None),  # group_people
    ]
    for action, resource, context in calls:
        assert (
            policy.is_action_permitted(action, resource, incoming_condition_values=context)
            == PermissionResult.PERMITTED
        ), (action, resource, context)
    # moto's evaluator checks StringEquals conditions only, so the two s3:ListBucket grants are read
    # here: prefixes under users/ (account deletion), and no prefix at all (/health's HeadBucket,
    # which carries none: a grant conditioned on users/* would refuse it).
    document = json.loads((ROOT / ".chalice" / config["iam_policy_file"]).read_text())
    listing = [
        st.get("Condition", {})
        for st in document["Statement"]
        if "s3:ListBucket" in st["Action"] and st["Resource"] == bucket
    ]
    assert {"StringLike": {"s3:prefix": ["users/*"]}} in listing
    assert {"Null": {"s3:prefix": "true"}} in listing and len(listing) == 2


def test_the_deploy_order_is_linear_the_web_origin_comes_from_chalices_record(tmp_path, capsys):
    """Stack (placeholder origin) → chalice deploy → stack again with the API's origin, read here."""
    from infrastructure import deployed

    (tmp_path / "deployed").mkdir()
    record = {
        "resources": [
            {"name": "api_handler", "resource_type": "lambda_function", "lambda_arn": "arn:aws:lambda:..."},
            {
                "name": "rest_api",
                "resource_type": "rest_api",
                "rest_api_id": "abc123",
                "rest_api_url": "https://abc123.execute-api.us-east-1.amazonaws.com/api/",
            },
        ]
    }
    (tmp_path / "deployed" / "prod.json").write_text(json.dumps(record))
    assert deployed.api_origin("prod", tmp_path) == "https://abc123.execute-api.us-east-1.amazonaws.com"
    assert deployed.rest_api_id("prod", tmp_path) == "abc123"
    with pytest.raises(SystemExit, match="run chalice deploy --stage dev first"):
        deployed.rest_api("dev", tmp_path)
    # The template takes the origin as its WebOrigin parameter, used by the bucket's CORS rule only.
    assert "AllowedOrigins: [!Ref WebOrigin]" in TEMPLATE.read_text()
