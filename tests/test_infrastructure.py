"""The infrastructure template: valid CloudFormation, and consistent with the Chalice stages."""

import fnmatch
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from chalicelib.graph_fanout import graph_prefix
from chalicelib.stores import object_storage
from local_stack.aws import client

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infrastructure" / "resources.yaml"


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), str(path)], capture_output=True, text=True, timeout=300
    )


def test_template_passes_cfn_lint():
    result = cfn_lint(TEMPLATE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_bucket_notifies_album_photos_only():
    """S3 filters notifications by key prefix: the one it is given must hold album photos and
    nothing else, and the endpoint may read photos and search keys (the keys the code builds)."""
    from cfnlint.decode import cfn_yaml

    resources = cfn_yaml.load(str(TEMPLATE))["Resources"]
    queues = resources["PhotoBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert sorted(q["Event"] for q in queues) == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    prefixes = {rule["Value"] for q in queues for rule in q["Filter"]["S3Key"]["Rules"] if rule["Name"] == "prefix"}
    assert len(prefixes) == 1
    (prefix,) = prefixes
    sub, item = "0b1e9a3c-1111-2222-3333-444455556666", "0" * 32
    assert object_storage.photo_key(sub, item, "image/heic").startswith(prefix)
    for other in (object_storage.thumbnail_key(sub, item), object_storage.key_photo_key(sub, item, "image/jpeg")):
        assert not other.startswith(prefix), other
    (analyse,) = [
        st
        for st in resources["SageMakerExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        if st["Sid"] == "PhotosToAnalyse"
    ]
    readable = [r["Fn::Sub"].removeprefix("${PhotoBucket.Arn}/") for r in analyse["Resource"]]
    for key in (
        object_storage.photo_key(sub, item, "image/jpeg"),
        object_storage.key_photo_key(sub, item, "image/jpeg"),
    ):
        assert any(fnmatch.fnmatchcase(key, pattern) for pattern in readable), key
    assert not any(fnmatch.fnmatchcase(object_storage.thumbnail_key(sub, item), pattern) for pattern in readable)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_stage_points_at_the_templates_resources(stage):
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]
    env = config["environment_variables"]
    text = TEMPLATE.read_text()
    # S3 names are global: the account and the region make the bucket's this deployment's own.
    assert env["PHOTO_BUCKET"] == f"memory-studio-{stage}-photos-111122223333-us-east-1"  # until configure
    assert "BucketName: !Sub memory-studio-${Stage}-photos-${AWS::AccountId}-${AWS::Region}" in text
    assert "BucketName: !Sub memory-studio-${Stage}-models-${AWS::AccountId}-${AWS::Region}" in text
    assert env["PHOTO_EVENTS_QUEUE"] == f"memory-studio-{stage}-photo-events"
    assert env["PHOTO_EVENTS_QUEUE_URL"].endswith(f"/memory-studio-{stage}-photo-events")
    assert "memory-studio-${Stage}-photo-events" in text
    assert env["MONGODB_SECRET_ID"] == f"memory-studio/{stage}/atlas" and "memory-studio/${Stage}/atlas" in text
    policy = "".join(
        (ROOT / ".chalice" / function["iam_policy_file"]).read_text()
        for function in config["lambda_functions"].values()
    )
    for resource in (
        f"memory-studio-{stage}-photos-111122223333-us-east-1/photos/*",
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
def test_api_gateways_own_errors_answer_in_the_apps_shape_with_cors(stage, monkeypatch):
    """The authorizer's 401/403 and API Gateway's 429/5xx never reach the app: the API's definition
    Chalice deploys carries gateway responses with the CORS headers and the {"error", "message"} body."""
    from chalice.deploy.swagger import SwaggerGenerator

    import app as app_module
    from infrastructure import gateway_responses, lambda_runtime

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]
    origin = config["environment_variables"]["CORS_ALLOW_ORIGIN"]  # the app's own CORS origin
    patched = lambda_runtime._with_gateway_responses(SwaggerGenerator.generate_swagger, origin)
    monkeypatch.setattr(SwaggerGenerator, "generate_swagger", patched)
    again = lambda_runtime._with_gateway_responses(SwaggerGenerator.generate_swagger, origin)  # patched once
    assert again.__wrapped__ is patched.__wrapped__
    definition = SwaggerGenerator("us-east-1", {"api_handler_arn": "arn:aws:lambda:::function:api"}).generate_swagger(
        app_module.app
    )
    answers = definition[gateway_responses.EXTENSION]
    assert "/photos/uploads" in definition["paths"]  # Chalice's own definition, extended
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


def aws_calls(stage: str) -> dict[str, tuple]:
    """Every AWS call of the code as IAM sees it, (action, resource, request context), by what
    makes it: the functions whose policies must allow it are in ``CALLERS``."""
    env = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]["environment_variables"]
    bucket = f"arn:aws:s3:::{env['PHOTO_BUCKET']}"
    sub = "0b1e9a3c-1111-2222-3333-444455556666"
    sqs = "arn:aws:sqs:us-east-1:1:"
    # The keys as the code builds them: a policy must allow these, not a hand-written pattern.
    photo_id = "0" * 32
    photo = object_storage.photo_key(sub, photo_id, "image/jpeg")
    thumb = object_storage.thumbnail_key(sub, photo_id)
    preview = object_storage.preview_key(sub, photo_id)
    key_photo = object_storage.key_photo_key(sub, photo_id, "image/png")
    graph = graph_prefix(sub, "1" * 32)
    return {
        "presigned photo upload": ("s3:PutObject", f"{bucket}/{photo}", None),
        "presigned key upload": ("s3:PutObject", f"{bucket}/{key_photo}", None),
        "the key upload's expiry tag": ("s3:PutObjectTagging", f"{bucket}/{key_photo}", None),
        "read a photo (presigned view, indexing, HeadObject)": ("s3:GetObject", f"{bucket}/{photo}", None),
        "read a thumbnail (presigned view)": ("s3:GetObject", f"{bucket}/{thumb}", None),
        "write a thumbnail": ("s3:PutObject", f"{bucket}/{thumb}", None),
        "delete a photo": ("s3:DeleteObject", f"{bucket}/{photo}", None),
        "delete a thumbnail": ("s3:DeleteObject", f"{bucket}/{thumb}", None),
        "read a preview (presigned view)": ("s3:GetObject", f"{bucket}/{preview}", None),
        "write a preview": ("s3:PutObject", f"{bucket}/{preview}", None),
        "delete a preview": ("s3:DeleteObject", f"{bucket}/{preview}", None),
        "check a key photo arrived (HeadObject)": ("s3:GetObject", f"{bucket}/{key_photo}", None),
        "delete a key photo (account deletion)": ("s3:DeleteObject", f"{bucket}/{key_photo}", None),
        # Listing: its conditions moto does not evaluate (read in the test below).
        "list an account's objects": ("s3:ListBucket", bucket, {"s3:prefix": object_storage.user_prefixes(sub)[0]}),
        "face endpoint": (
            "sagemaker:InvokeEndpoint",
            f"arn:aws:sagemaker:us-east-1:1:endpoint/{env['FACE_ENDPOINT_NAME']}",
            None,
        ),
        "Atlas secret": (
            "secretsmanager:GetSecretValue",
            f"arn:aws:secretsmanager:us-east-1:1:secret:{env['MONGODB_SECRET_ID']}-AbCdEf",
            None,
        ),
        "delete a Cognito user": ("cognito-idp:AdminDeleteUser", env["COGNITO_USER_POOL_ARN"], None),
        "read the pool's password rules (web/config.json)": (
            "cognito-idp:DescribeUserPool",
            env["COGNITO_USER_POOL_ARN"],
            None,
        ),
        "sign a Cognito user out": ("cognito-idp:AdminUserGlobalSignOut", env["COGNITO_USER_POOL_ARN"], None),
        "send photo events (a batch is authorised as SendMessage)": (
            "sqs:SendMessage",
            sqs + env["PHOTO_EVENTS_QUEUE"],
            None,
        ),
        "read photo events": ("sqs:ReceiveMessage", sqs + env["PHOTO_EVENTS_QUEUE"], None),
        "request a regrouping": ("sqs:SendMessage", sqs + env["PEOPLE_JOBS_QUEUE"], None),
        "read regrouping requests": ("sqs:ReceiveMessage", sqs + env["PEOPLE_JOBS_QUEUE"], None),
        "write a graph's objects": ("s3:PutObject", f"{bucket}/{graph}vectors.f32", None),
        "read a graph's objects": ("s3:GetObject", f"{bucket}/{graph}vectors.f32", None),
        "delete a graph's objects": ("s3:DeleteObject", f"{bucket}/{graph}edges/0000000000.npz", None),
        "list a graph's objects": ("s3:ListBucket", bucket, {"s3:prefix": graph}),
        "send graph blocks": ("sqs:SendMessage", sqs + env["GRAPH_JOBS_QUEUE"], None),
        "read graph blocks": ("sqs:ReceiveMessage", sqs + env["GRAPH_JOBS_QUEUE"], None),
    }


CALLERS = {  # what each function's code calls (chalicelib: album, search, accounts, indexing, reindex, people_jobs)
    "api_handler": {
        "presigned photo upload",
        "presigned key upload",
        "the key upload's expiry tag",
        "read a photo (presigned view, indexing, HeadObject)",
        "read a thumbnail (presigned view)",
        "read a preview (presigned view)",
        "delete a photo",
        "delete a thumbnail",
        "delete a preview",
        "check a key photo arrived (HeadObject)",
        "delete a key photo (account deletion)",
        "list an account's objects",
        "face endpoint",
        "Atlas secret",
        "delete a Cognito user",
        "sign a Cognito user out",
        "read the pool's password rules (web/config.json)",
        "request a regrouping",
        "delete a graph's objects",
        "list a graph's objects",
    },
    "index_photos": {
        "read a photo (presigned view, indexing, HeadObject)",
        "write a thumbnail",
        "write a preview",
        "delete a photo",
        "delete a thumbnail",
        "delete a preview",
        "face endpoint",
        "Atlas secret",
        "read photo events",
        "request a regrouping",
    },
    "reindex": {"face endpoint", "Atlas secret", "send photo events (a batch is authorised as SendMessage)"},
    "group_people": {
        "face endpoint",
        "Atlas secret",
        "read regrouping requests",
        "write a graph's objects",
        "read a graph's objects",
        "delete a graph's objects",
        "list a graph's objects",
        "send graph blocks",
    },
    "graph_rows": {
        "write a graph's objects",
        "read a graph's objects",
        "list a graph's objects",
        "read graph blocks",
        "request a regrouping",
    },
    "purge_trash": {"Atlas secret", "delete a photo", "delete a thumbnail", "delete a preview"},
    "cognito_post_confirmation": {"Atlas secret", "sign a Cognito user out"},
}


@pytest.mark.parametrize("stage", ["dev", "prod"])
@pytest.mark.parametrize("function", sorted(CALLERS))
def test_each_function_may_make_exactly_its_own_aws_calls(stage, function):
    """Each function's own policy, as IAM evaluates it (moto's policy evaluator): every call its
    code makes is allowed (a missing one fails in the cloud only: the key upload's tagging,
    /health's HeadBucket), and every call only other functions make is refused."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"][stage]
    document = (ROOT / ".chalice" / config["lambda_functions"][function]["iam_policy_file"]).read_text()
    policy = IAMPolicy(document)
    for name, (action, resource, context) in aws_calls(stage).items():
        allowed = policy.is_action_permitted(action, resource, incoming_condition_values=context)
        if name in CALLERS[function]:
            assert allowed == PermissionResult.PERMITTED, (function, name)
        elif action != "s3:ListBucket":  # its conditions moto does not evaluate: read below
            assert allowed == PermissionResult.NEUTRAL, (function, name)
    # moto's evaluator checks StringEquals conditions only, so the s3:ListBucket grants are read here:
    # the prefixes of an account's objects (account deletion, the API only), and no prefix at all — HeadBucket
    # (/health) carries none, and S3 answers HeadObject on a missing key with 404 only to a caller
    # allowed s3:ListBucket (403 otherwise), which the API and the indexer rely on.
    bucket = f"arn:aws:s3:::{config['environment_variables']['PHOTO_BUCKET']}"
    listing = [
        st.get("Condition", {})
        for st in json.loads(document)["Statement"]
        if "s3:ListBucket" in st["Action"] and st["Resource"] == bucket
    ]
    assert ({"Null": {"s3:prefix": "true"}} in listing) == (function in ("api_handler", "index_photos"))
    prefixes = [pattern for c in listing for pattern in c.get("StringLike", {}).get("s3:prefix", [])]
    every_prefix_allowed = all(
        any(fnmatch.fnmatchcase(prefix, pattern) for pattern in prefixes)
        for prefix in object_storage.user_prefixes("a-sub")
    )
    assert every_prefix_allowed == (function == "api_handler")
    assert not any(fnmatch.fnmatchcase("other/", pattern) for pattern in prefixes)  # nothing but a user's kinds
    graph = graph_prefix("a-sub", "1" * 32)  # a fanned-out graph's objects: the regrouping and its workers
    lists_graphs = any(fnmatch.fnmatchcase(graph, pattern) for pattern in prefixes)
    assert lists_graphs == (function in ("api_handler", "group_people", "graph_rows"))


def test_every_deployed_function_has_its_own_policy_and_the_files_are_current():
    """The catalogue's functions are the policies' functions, in every stage; the committed files
    are what ``python -m infrastructure.policies`` writes."""
    from infrastructure import policies

    catalog = json.loads((ROOT / "functions" / "catalog.json").read_text())["functions"]
    handlers = {f["handler"].removeprefix("app.") for f in catalog.values()}
    assert handlers == {"app"} | (set(CALLERS) - {"api_handler"}) and set(policies.FUNCTIONS) == set(CALLERS)
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage in policies.STAGES:
        assert "iam_policy_file" not in config["stages"][stage]  # no shared fallback
        functions = config["stages"][stage]["lambda_functions"]
        assert {name: f["iam_policy_file"] for name, f in functions.items()} == {
            name: policies.policy_file(stage, name) for name in CALLERS
        }
    assert policies.main(["--check"]) == 0


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
    assert deployed.function_arn("prod", "api_handler", tmp_path) == "arn:aws:lambda:..."
    with pytest.raises(SystemExit, match="no function cognito_post_confirmation"):
        deployed.function_arn("prod", "cognito_post_confirmation", tmp_path)
    with pytest.raises(SystemExit, match="run chalice deploy --stage dev first"):
        deployed.rest_api("dev", tmp_path)
    # The template takes the origin as its WebOrigin parameter, used by the bucket's CORS rule only,
    # and the trigger's ARN as the pool's post-confirmation trigger, with Cognito's leave to invoke it.
    template = TEMPLATE.read_text()
    assert "AllowedOrigins: [!Ref WebOrigin]" in template
    assert "{PostConfirmation: !Ref PostConfirmationFunctionArn}" in template
    assert "FunctionName: !Ref PostConfirmationFunctionArn" in template


def test_configure_puts_every_value_chalice_needs_from_the_stack_into_the_config(tmp_path):
    """``infrastructure.stack configure``: no value is copied by hand (the slow deploy-path test
    runs it against moto's CloudFormation)."""
    import shutil

    from infrastructure import policies, stack

    for path in (ROOT / ".chalice").glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    account = "444455556666"
    queue = f"https://sqs.eu-west-1.amazonaws.com/{account}/memory-studio-prod-photo-events"
    outputs = {
        "PhotoBucketName": "memory-studio-prod-photos",
        "UserPoolId": "eu-west-1_abc",
        "UserPoolArn": f"arn:aws:cognito-idp:eu-west-1:{account}:userpool/eu-west-1_abc",
        "UserPoolClientId": "client123",
        "PhotoEventsQueueUrl": queue,
        "PeopleJobsQueueUrl": queue.replace("photo-events", "people-jobs"),
        "GraphJobsQueueUrl": queue.replace("photo-events", "graph-jobs"),
    }
    with pytest.raises(SystemExit, match="no output UserPoolArn"):
        stack.configure("prod", {k: v for k, v in outputs.items() if k != "UserPoolArn"}, tmp_path)
    config = stack.configure("prod", outputs, tmp_path)
    env = config["stages"]["prod"]["environment_variables"]
    assert "REPLACEME" not in json.dumps(env) and "111122223333" not in json.dumps(env)
    assert env["PHOTO_EVENTS_QUEUE"] == "memory-studio-prod-photo-events" and env["COGNITO_CLIENT_IDS"] == "client123"
    assert env["GRAPH_JOBS_QUEUE"] == "memory-studio-prod-graph-jobs"
    assert config["stages"]["dev"] == json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["dev"]
    assert json.loads((tmp_path / "config.json").read_text()) == config
    api_policy = (tmp_path / policies.policy_file("prod", "api_handler")).read_text()
    assert outputs["UserPoolArn"] in api_policy and "VpcNetworking" not in api_policy
    assert policies.write(config, tmp_path, check=True) == []
    assert "subnet_ids" not in config["stages"]["prod"]  # the public network path

    # The private path: the functions go into the stack's private subnets, with leave to attach to them.
    private = dict(outputs, PrivateSubnetIds="subnet-a,subnet-b", FunctionsSecurityGroupId="sg-1")
    config = stack.configure("prod", private, tmp_path)
    assert config["stages"]["prod"]["subnet_ids"] == ["subnet-a", "subnet-b"]
    assert config["stages"]["prod"]["security_group_ids"] == ["sg-1"]
    for function in policies.FUNCTIONS:
        document = json.loads((tmp_path / policies.policy_file("prod", function)).read_text())
        assert "ec2:CreateNetworkInterface" in document["Statement"][-1]["Action"], function
    assert "subnet_ids" not in stack.configure("prod", outputs, tmp_path)["stages"]["prod"]  # and back


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_deployed_stages_pass_the_preflights_configuration_checks(stage):
    from infrastructure import deployed, preflight

    checks = preflight.stage_checks(stage, deployed.read_config())
    assert all(ok for _, ok, _ in checks), checks


@pytest.mark.parametrize(
    "origin", ["*", "", "http://app.example", "https://*.example", "https://app.example/path", "null"]
)
def test_a_deployed_stage_may_not_allow_any_origin(origin, tmp_path, capsys):
    from infrastructure import deployed, lambda_runtime, preflight

    name, ok, detail = preflight.cors_origin("prod", {"CORS_ALLOW_ORIGIN": origin})
    assert not ok and "CORS_ALLOW_ORIGIN" in detail
    config = deployed.read_config()
    config["stages"]["prod"]["environment_variables"]["CORS_ALLOW_ORIGIN"] = origin
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    # The deploy refuses before Chalice runs.
    assert lambda_runtime.run_chalice(["deploy", "--stage", "prod", "--project-dir", str(tmp_path)]) == 2
    assert "prod: CORS origin" in capsys.readouterr().err


# The target-platform audit (infrastructure/package_audit.py) on packages made here to fail it ---------
def _between_glibc_2_26_and_2_34() -> Path | None:
    """A library of this machine that needs a glibc newer than Amazon Linux 2's, within 2023's."""
    from infrastructure.package_audit import glibc_needed

    for path in sorted(Path("/usr/lib/x86_64-linux-gnu").glob("lib*.so.*"))[:300]:
        try:
            needed = glibc_needed(path.read_bytes())
        except Exception:  # noqa: BLE001 (not an ELF file we can read: try the next)
            continue
        if needed is not None and (2, 26) < needed <= (2, 34):
            return path
    return None


def test_the_audit_refuses_what_amazon_linux_2_cannot_run(tmp_path):
    """The decoder before version 0.5.0 (os.memfd_create, unchecked), a library built against a newer
    glibc, a manylinux_2_28 wheel: each fails the python3.11 runtime, none fails python3.13."""
    from datetime import date

    from infrastructure import package_audit

    library = _between_glibc_2_26_and_2_34()
    if library is None:
        pytest.skip("no library of this machine needs a glibc between 2.27 and 2.34")
    archive = tmp_path / "deployment.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("app.py", "import chalicelib.shared.isolation\n")
        out.writestr("chalicelib/shared/isolation.py", "import os\nfd = os.memfd_create('answer', os.MFD_CLOEXEC)\n")
        out.write(library, "numpy/_core/_multiarray_umath.cpython-313-x86_64-linux-gnu.so")
        out.writestr("numpy-2.2.6.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: cp313-cp313-manylinux_2_28_x86_64\n")
    today = date(2026, 12, 7)
    old = {name: (ok, detail) for name, ok, detail in package_audit.audit(archive, "python3.11", today)}
    assert not old["runtime"][0] and "deprecated since 2026-06-30" in old["runtime"][1]
    assert not old["native libraries"][0] and "needs GLIBC_2." in old["native libraries"][1]
    assert not old["wheel tags"][0] and "numpy-2.2.6.dist-info" in old["wheel tags"][1]
    assert not old["optional os functions"][0] and "os.memfd_create" in old["optional os functions"][1]
    new = package_audit.audit(archive, "python3.13", today)
    assert all(ok for _, ok, _ in new), new


@pytest.mark.parametrize(
    ("tag", "runtime", "fits"),
    [
        ("py3-none-any", "python3.11", True),
        ("cp313-cp313-manylinux_2_17_x86_64", "python3.13", True),
        ("cp313-cp313-manylinux_2_17_x86_64", "python3.12", False),  # another Python's ABI
        ("cp39-abi3-manylinux2014_x86_64", "python3.11", True),  # the stable ABI of an older Python
        ("cp314-abi3-manylinux2014_x86_64", "python3.13", False),
        ("cp311-cp311-manylinux_2_28_x86_64", "python3.11", False),  # newer than Amazon Linux 2's glibc
        ("cp313-cp313-manylinux_2_34_x86_64", "python3.13", True),
        ("cp313-cp313-manylinux_2_17_aarch64", "python3.13", False),  # the functions run on x86_64
        ("cp313-cp313-musllinux_1_2_x86_64", "python3.13", False),
    ],
)
def test_wheel_tags_are_read_against_the_runtime(tag, runtime, fits):
    from infrastructure.package_audit import RUNTIMES, _tag_fits

    abi = "cp" + runtime.removeprefix("python").replace(".", "")
    assert _tag_fits(tag, abi, RUNTIMES[runtime].glibc) == fits


def test_a_stack_whose_first_create_rolled_back_is_deleted_and_created_again():
    """What a taken bucket name did to a first deploy. moto never rolls a stack back, so the
    answers CloudFormation gives are stubbed on a real client."""
    import boto3
    from botocore.stub import Stubber

    from infrastructure import stack

    cloudformation = boto3.client(
        "cloudformation", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    name = stack.stack_name("prod")
    described = {"Stacks": [{"StackName": name, "StackStatus": "ROLLBACK_COMPLETE", "CreationTime": "2026-12-07"}]}
    outputs = {
        "Stacks": [
            {
                "StackName": name,
                "StackStatus": "CREATE_COMPLETE",
                "CreationTime": "2026-12-07",
                "Outputs": [{"OutputKey": "PhotoBucketName", "OutputValue": "b"}],
            }
        ]
    }
    gone = {"Stacks": [{"StackName": name, "StackStatus": "DELETE_COMPLETE", "CreationTime": "2026-12-07"}]}
    with Stubber(cloudformation) as stub:
        stub.add_response("describe_stacks", described, {"StackName": name})
        stub.add_response("delete_stack", {}, {"StackName": name})
        stub.add_response("describe_stacks", gone, {"StackName": name})  # the delete waiter
        stub.add_response("create_stack", {"StackId": "new"}, None)
        stub.add_response("describe_stacks", outputs, {"StackName": name})  # the create waiter
        stub.add_response("describe_stacks", outputs, {"StackName": name})  # the outputs
        assert stack.deploy(cloudformation, "prod") == {"PhotoBucketName": "b"}
        stub.assert_no_pending_responses()


def test_every_alarm_notifies_the_alarm_topic_and_watches_every_function():
    from cfnlint.decode import cfn_yaml

    resources = cfn_yaml.load(str(TEMPLATE))["Resources"]
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {
        "PhotoEventsDeadLetterAlarm",
        "PeopleJobsDeadLetterAlarm",
        "FunctionErrorsAlarm",
        "FunctionThrottlesAlarm",
        "Api5xxAlarm",
        "EndpointErrorsAlarm",
    } <= set(alarms)
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "Alarms"}], name
    catalog = json.loads((ROOT / "functions" / "catalog.json").read_text())["functions"]
    chalice_names = {
        "" if f["handler"] == "app.app" else "-" + f["handler"].removeprefix("app.") for f in catalog.values()
    }
    for name in ("FunctionErrorsAlarm", "FunctionThrottlesAlarm"):
        watched = {
            m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Fn::Sub"].removeprefix("memory-studio-${Stage}")
            for m in alarms[name]["Metrics"]
            if "MetricStat" in m
        }
        assert watched == chalice_names, name
    endpoint = {d["Name"]: d["Value"] for d in alarms["EndpointErrorsAlarm"]["Dimensions"]}
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    for stage in ("dev", "prod"):
        name = config["stages"][stage]["environment_variables"]["FACE_ENDPOINT_NAME"]
        assert endpoint["EndpointName"]["Fn::Sub"].replace("${Stage}", stage) == name
    assert resources["AlarmsEmailSubscription"]["Condition"] == "HasAlarmEmail"


class StubbedSession:
    """A boto3 session whose clients are real, their answers stubbed (moto has neither Lambda's
    account settings nor SageMaker's quotas), or pointed at moto's server."""

    def __init__(self, region_name, clients):
        self.region_name, self.clients = region_name, clients

    def client(self, name):
        return self.clients[name]


def _stubbed(name, answers):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(name, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    for operation, answer in answers:
        stub.add_response(operation, answer)
    stub.activate()
    return client


def test_the_preflight_reads_quotas_and_says_what_falls_short(aws_stack):
    from infrastructure import deployed, preflight

    config = deployed.read_config()
    secrets = client("secretsmanager", aws_stack.aws_endpoint_url)
    secret_id = config["stages"]["prod"]["environment_variables"]["MONGODB_SECRET_ID"]
    secrets.create_secret(Name=secret_id, SecretString='{"uri": "set-me"}')  # what the stack leaves
    quotas = {"Quotas": [{"QuotaName": "ml.g4dn.xlarge for endpoint usage", "Value": 0.0}]}
    new_account = {"AccountLimit": {"ConcurrentExecutions": 10, "UnreservedConcurrentExecutions": 10}}
    session = StubbedSession(
        "us-east-1",
        {
            "lambda": _stubbed("lambda", [("get_account_settings", new_account)]),
            "service-quotas": _stubbed("service-quotas", [("list_service_quotas", quotas)]),
            "secretsmanager": secrets,
        },
    )
    checks = {name: (ok, detail) for name, ok, detail in preflight.account_checks("prod", config, session)}
    assert checks["prod: region"] == (True, "us-east-1") and checks["Lambda runtime"][0]
    assert not checks["prod: Lambda concurrency"][0] and "reserves 100 of 10" in checks["prod: Lambda concurrency"][1]
    assert not checks["prod: GPU endpoint quota"][0] and "ask for at least 1" in checks["prod: GPU endpoint quota"][1]
    assert not checks["prod: Atlas"][0] and "not a URI" in checks["prod: Atlas"][1]

    secrets.put_secret_value(SecretId=secret_id, SecretString='{"uri": "mongodb://127.0.0.1:9/?directConnection=true"}')
    quotas["Quotas"][0]["Value"] = 2.0
    grown = {"AccountLimit": {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 1000}}
    session.clients.update(
        {
            "lambda": _stubbed("lambda", [("get_account_settings", grown)]),
            "service-quotas": _stubbed("service-quotas", [("list_service_quotas", quotas)]),
        }
    )
    checks = {name: (ok, detail) for name, ok, detail in preflight.account_checks("prod", config, session)}
    assert checks["prod: Lambda concurrency"][0] and checks["prod: GPU endpoint quota"][0]
    assert not checks["prod: Atlas"][0] and "could not read" in checks["prod: Atlas"][1]  # nothing answers there
    wrong_region = StubbedSession("eu-west-1", session.clients)
    assert not preflight.region("prod", config["stages"]["prod"]["environment_variables"], wrong_region.region_name)[1]


def test_the_preflight_says_how_the_functions_reach_atlas():
    from infrastructure import preflight

    assert preflight.network("prod", {})[1] and "0.0.0.0/0" in preflight.network("prod", {})[2]
    private = {"subnet_ids": ["subnet-1", "subnet-2"], "security_group_ids": ["sg-1"]}
    assert preflight.network("prod", private)[1] and "NAT" in preflight.network("prod", private)[2]
    assert not preflight.network("prod", {"subnet_ids": ["subnet-1"]})[1]


def test_a_stage_with_a_backfill_endpoint_lets_the_indexer_use_it():
    from moto.iam.access_control import IAMPolicy, PermissionResult

    from chalicelib.backfill import Backfill  # noqa: F401 (the code the grants are for)
    from infrastructure import policies

    env = json.loads((ROOT / ".chalice" / "config.json").read_text())["stages"]["prod"]["environment_variables"]
    bucket = f"arn:aws:s3:::{env['PHOTO_BUCKET']}"
    calls = [
        ("sagemaker:InvokeEndpointAsync", "arn:aws:sagemaker:us-east-1:1:endpoint/memory-studio-prod-faces-backfill"),
        ("s3:PutObject", f"{bucket}/inference/requests/{'0' * 32}-etag.json"),
        ("s3:GetObject", f"{bucket}/inference/answers/{'0' * 32}-etag.out"),
        ("s3:DeleteObject", f"{bucket}/inference/answers/{'0' * 32}-etag.out"),
    ]
    with_backfill = dict(env, BACKFILL_ENDPOINT_NAME="memory-studio-prod-faces-backfill")
    for environment, allowed in ((env, PermissionResult.NEUTRAL), (with_backfill, PermissionResult.PERMITTED)):
        document = json.dumps(policies.policy("prod", environment, "index_photos"))
        for action, resource in calls:
            assert IAMPolicy(document).is_action_permitted(action, resource) == allowed, (action, allowed)
    api = json.dumps(policies.policy("prod", with_backfill, "api_handler"))
    assert IAMPolicy(api).is_action_permitted(*calls[0]) == PermissionResult.NEUTRAL  # the indexer's alone
    # The endpoint's outcomes reach the indexer's queue, raw, and nothing else may publish there.
    from cfnlint.decode import cfn_yaml

    resources = cfn_yaml.load(str(TEMPLATE))["Resources"]
    subscription = resources["InferenceResultsToIndexer"]["Properties"]
    assert subscription["RawMessageDelivery"] is True and subscription["Protocol"] == "sqs"
    statements = resources["PhotoEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert {s["Sid"] for s in statements} == {"S3Notifications", "InferenceResults"}


def test_every_deployed_functions_logs_are_kept_for_the_stages_days(aws_stack, tmp_path):
    """Against moto's CloudWatch Logs, from a deployment record as Chalice writes it."""
    from infrastructure import deployed, log_retention

    (tmp_path / "deployed").mkdir()
    arn = "arn:aws:lambda:us-east-1:123456789012:function:"
    record = {
        "resources": [
            {"name": "api_handler", "resource_type": "lambda_function", "lambda_arn": arn + "memory-studio-prod"},
            {"name": "reindex", "resource_type": "lambda_function", "lambda_arn": arn + "memory-studio-prod-reindex"},
            {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "abc"},
        ]
    }
    (tmp_path / "deployed" / "prod.json").write_text(json.dumps(record))
    names = deployed.function_names("prod", tmp_path)
    assert names == ["memory-studio-prod", "memory-studio-prod-reindex"]
    logs = client("logs", aws_stack.aws_endpoint_url)
    logs.create_log_group(logGroupName="/aws/lambda/memory-studio-prod")  # one Lambda already made
    for _ in range(2):  # idempotent
        log_retention.apply(logs, names, log_retention.DAYS["prod"])
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/memory-studio-prod")["logGroups"]
    assert {g["logGroupName"]: g["retentionInDays"] for g in groups} == {
        "/aws/lambda/memory-studio-prod": 90,
        "/aws/lambda/memory-studio-prod-reindex": 90,
    }


def test_the_stack_commands_reach_their_steps(monkeypatch, capsys):
    """``infrastructure.stack configure`` once failed before doing anything (a local name hid the
    module's ``outputs``); both commands are run here with the AWS calls recorded."""
    from infrastructure import stack

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    calls = []
    monkeypatch.setattr(stack, "outputs", lambda cloudformation, stage: calls.append(("outputs", stage)) or {"A": "1"})
    monkeypatch.setattr(stack, "configure", lambda stage, found: calls.append(("configure", stage, found)))
    monkeypatch.setattr(
        stack, "deploy", lambda cloudformation, stage, *rest: calls.append(("deploy", stage, rest)) or {}
    )
    assert stack.main(["configure", "--stage", "prod"]) == 0
    assert (
        stack.main(["deploy", "--stage", "dev", "--network-mode", "private", "--alarm-email", "ops@example.com"]) == 0
    )
    assert calls == [
        ("outputs", "prod"),
        ("configure", "prod", {"A": "1"}),
        ("deploy", "dev", (None, None, "ops@example.com", "private", None)),
    ]
