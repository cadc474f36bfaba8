"""The deploy sequence of docs/deploy.md, run for real against moto's server: the resources stack, its outputs
into Chalice's config, ``chalice deploy``, then the endpoint deploy script and the reindex function's
code against what those steps created.

Where moto cannot do a step, the test says which and checks the rest:
- moto's CloudFormation models the queues, the buckets (encryption only) and the IAM role; it skips
  the Cognito pool and client, the secret, the alarm and the queue policy, and ignores the bucket's
  CORS, lifecycle, notification and public-access settings (those are checked by cfn-lint alone).
  The pool comes from moto's Cognito instead, where the stack's outputs would name it.
- moto's ImportRestApi accepts only OpenAPI 3 documents and Chalice sends Swagger 2.0, so
  ``chalice deploy`` stops at the REST API, after every role, function and event source; Chalice
  records a deployment (and so can ``chalice delete`` it) only when all of it succeeded. The REST API
  Chalice would import is the one ``chalice package`` writes (tests/test_package.py checks it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from infrastructure import policies, stack
from infrastructure.lambda_runtime import TARGET
from local_stack.aws import CREDENTIALS, REGION, client, free_port
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Tried to parse AWS::")]
STAGE = "dev"
CATALOG = json.loads((ROOT / "functions" / "catalog.json").read_text())["functions"]
# Chalice's name for each function (catalog key → the name in config.json's lambda_functions).
CHALICE_NAMES = {
    "APIHandler": "api_handler",
    "IndexPhotos": "index_photos",
    "Reindex": "reindex",
    "GroupPeople": "group_people",
    "GraphRows": "graph_rows",
    "PurgeTrash": "purge_trash",
    "CognitoPostConfirmation": "cognito_post_confirmation",
}
# What the stack's outputs would give where moto's CloudFormation does not model the resource.
MOTO_SKIPS = {"UserPoolId", "UserPoolArn", "UserPoolClientId", "AtlasSecretArn"}


def run(command: list[str], cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """Every step of the sequence once; the tests read back what each created."""
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID=CREDENTIALS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=CREDENTIALS["aws_secret_access_key"],
    )
    project = tmp_path_factory.mktemp("project")
    for name in ("app.py", "requirements.txt"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(ROOT / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".chalice").mkdir()
    for path in (ROOT / ".chalice").glob("*.json"):
        shutil.copy(path, project / ".chalice" / path.name)
    try:
        # 1. The stack: python -m infrastructure.stack deploy --stage dev
        created = run([sys.executable, "-m", "infrastructure.stack", "deploy", "--stage", STAGE], ROOT, env)
        assert created.returncode == 0, created.stdout + created.stderr
        outputs = json.loads(created.stdout)
        again = run([sys.executable, "-m", "infrastructure.stack", "deploy", "--stage", STAGE], ROOT, env)
        assert again.returncode == 0 and json.loads(again.stdout) == outputs, again.stderr  # re-runnable
        cognito = client("cognito-idp", endpoint)
        pool = cognito.create_user_pool(PoolName=f"memory-studio-{STAGE}")["UserPool"]
        app_client = cognito.create_user_pool_client(UserPoolId=pool["Id"], ClientName="memory-studio-web")
        outputs_with_pool = dict(
            outputs,
            UserPoolId=pool["Id"],
            UserPoolArn=pool["Arn"],
            UserPoolClientId=app_client["UserPoolClient"]["ClientId"],
        )
        # 2. Its outputs into Chalice's config: python -m infrastructure.stack configure --stage dev
        stack.configure(STAGE, outputs_with_pool, project / ".chalice")
        # 3. chalice deploy --stage dev, for the target runtime: python -m infrastructure.lambda_runtime deploy
        wrapper = [sys.executable, "-m", "infrastructure.lambda_runtime", "deploy", "--stage", STAGE]
        deployed = run(wrapper, project, dict(env, PYTHONPATH=str(ROOT)))
        yield {
            "endpoint": endpoint,
            "env": env,
            "project": project,
            "outputs": outputs,
            "pool": pool,
            "config": json.loads((project / ".chalice" / "config.json").read_text()),
            "deploy": deployed,
        }
    finally:
        server.stop()


def test_the_stack_creates_the_queues_buckets_and_role_it_declares(cloud):
    outputs = cloud["outputs"]
    assert set(stack.CONFIG_FROM_OUTPUTS.values()) - MOTO_SKIPS <= set(outputs)
    sqs = client("sqs", cloud["endpoint"])
    for queue, visibility, receives in (
        ("photo-events", "720", 5),
        ("people-jobs", "5400", 3),
        ("graph-jobs", "5400", 3),
    ):
        url = sqs.get_queue_url(QueueName=f"memory-studio-{STAGE}-{queue}")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["VisibilityTimeout"] == visibility
        redrive = json.loads(attributes["RedrivePolicy"])
        assert redrive["maxReceiveCount"] == receives
        assert redrive["deadLetterTargetArn"].endswith(f":memory-studio-{STAGE}-{queue}-dlq")
    assert outputs["PhotoEventsDeadLetterQueueArn"].endswith(f":memory-studio-{STAGE}-photo-events-dlq")
    s3 = client("s3", cloud["endpoint"])
    rules = s3.get_bucket_encryption(Bucket=outputs["PhotoBucketName"])["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    s3.head_bucket(Bucket=outputs["ModelBucketName"])
    role = client("iam", cloud["endpoint"]).get_role(RoleName=outputs["SageMakerExecutionRoleArn"].rsplit("/", 1)[1])
    principal = role["Role"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "sagemaker.amazonaws.com"}


def test_configure_writes_the_stacks_values_and_their_policies(cloud):
    env = cloud["config"]["stages"][STAGE]["environment_variables"]
    outputs = cloud["outputs"]
    assert env["PHOTO_BUCKET"] == outputs["PhotoBucketName"]
    assert env["PHOTO_EVENTS_QUEUE_URL"] == outputs["PhotoEventsQueueUrl"]
    assert env["PHOTO_EVENTS_QUEUE"] == f"memory-studio-{STAGE}-photo-events"
    assert env["PEOPLE_JOBS_QUEUE"] == f"memory-studio-{STAGE}-people-jobs"
    assert env["GRAPH_JOBS_QUEUE"] == f"memory-studio-{STAGE}-graph-jobs"
    assert env["COGNITO_USER_POOL_ARN"] == cloud["pool"]["Arn"]
    assert "REPLACEME" not in json.dumps(env) and "111122223333" not in json.dumps(env)
    # The policies follow: the API may delete accounts of this pool and no other.
    api_policy = json.loads((cloud["project"] / ".chalice" / f"policy-{STAGE}-api_handler.json").read_text())
    statement = next(s for s in api_policy["Statement"] if s["Sid"] == "DeleteOwnAccount")
    assert statement["Resource"] == cloud["pool"]["Arn"]
    assert policies.write(cloud["config"], cloud["project"] / ".chalice", check=True) == []


def test_chalice_deploy_creates_every_function_with_its_role_settings_and_event_source(cloud):
    result = cloud["deploy"]
    output = result.stdout + result.stderr
    assert result.returncode == 0 or "ImportRestApi" in output, output  # moto's one refusal (module doc)
    config = cloud["config"]
    stage = config["stages"][STAGE]
    environment = dict(config["environment_variables"], **stage["environment_variables"])
    lambda_client = client("lambda", cloud["endpoint"])
    iam = client("iam", cloud["endpoint"])
    queue_arns = {
        name: f"arn:aws:sqs:{REGION}:123456789012:{stage['environment_variables'][name]}"
        for name in ("PHOTO_EVENTS_QUEUE", "PEOPLE_JOBS_QUEUE", "GRAPH_JOBS_QUEUE")
    }
    every_mapping = lambda_client.list_event_source_mappings()["EventSourceMappings"]
    for catalog_name, entry in CATALOG.items():
        name = CHALICE_NAMES[catalog_name]
        settings = dict(
            {"lambda_memory_size": stage["lambda_memory_size"], "lambda_timeout": stage["lambda_timeout"]},
            **stage["lambda_functions"][name],
        )
        function_name = "memory-studio-dev" if name == "api_handler" else f"memory-studio-dev-{name}"
        function = lambda_client.get_function_configuration(FunctionName=function_name)
        assert function["Handler"] == entry["handler"]
        assert function["Runtime"] == TARGET
        assert function["MemorySize"] == settings["lambda_memory_size"] == entry.get("memory_mb", 512)
        assert function["Timeout"] == settings["lambda_timeout"]
        assert function["Environment"]["Variables"] == environment
        # Its own role, holding exactly its policy file.
        role_name = function["Role"].rsplit("/", 1)[1]
        assert role_name == f"memory-studio-dev-{name}"
        (policy_name,) = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        policy_file = cloud["project"] / ".chalice" / settings["iam_policy_file"]
        assert document == json.loads(policy_file.read_text())
        mappings = [m for m in every_mapping if m["FunctionArn"] == function["FunctionArn"]]
        queue = {
            "IndexPhotos": "PHOTO_EVENTS_QUEUE",
            "GroupPeople": "PEOPLE_JOBS_QUEUE",
            "GraphRows": "GRAPH_JOBS_QUEUE",
        }.get(catalog_name)
        if queue is None:
            assert mappings == []
            continue
        (mapping,) = mappings
        assert mapping["EventSourceArn"] == queue_arns[queue]
        assert mapping["BatchSize"] == 1
        if catalog_name == "IndexPhotos":
            assert mapping["ScalingConfig"]["MaximumConcurrency"] == int(environment["INDEXER_MAX_CONCURRENCY"])
        if catalog_name == "GraphRows":  # a large album's graph: at most 32 workers at once
            assert mapping["ScalingConfig"]["MaximumConcurrency"] == 32


def test_the_endpoint_deploy_script_runs_against_the_stacks_bucket_and_role(cloud, tmp_path):
    from tests.test_endpoint_deploy import fake_bundle

    bundle = fake_bundle(tmp_path, "dlib-faceres-v9.test")
    outputs, env = cloud["outputs"], cloud["env"]
    command = [sys.executable, "-m", "model_factory.deploy"]
    published = run([*command, "publish", "--bucket", outputs["ModelBucketName"], "--bundle", str(bundle)], ROOT, env)
    assert published.returncode == 0, published.stdout + published.stderr
    endpoint_name = cloud["config"]["stages"][STAGE]["environment_variables"]["FACE_ENDPOINT_NAME"]
    deploy = [
        *command,
        "deploy",
        "--bucket",
        outputs["ModelBucketName"],
        "--bundle",
        str(bundle),
        "--image",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/memory-studio-faces:1",  # only a real account has ECR images
        "--role",
        outputs["SageMakerExecutionRoleArn"],
        "--endpoint",
        endpoint_name,
        "--allowed-buckets",
        outputs["PhotoBucketName"],
        "--skip-index-check",  # no Atlas beside moto
    ]
    deployed = run(deploy, ROOT, env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    sagemaker = client("sagemaker", cloud["endpoint"])
    described = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    model = sagemaker.describe_model(ModelName=described["EndpointConfigName"])
    assert model["ExecutionRoleArn"] == outputs["SageMakerExecutionRoleArn"]
    assert model["PrimaryContainer"]["ModelDataUrl"].startswith(f"s3://{outputs['ModelBucketName']}/models/")
    assert model["PrimaryContainer"]["Environment"]["ALLOWED_S3_BUCKETS"] == outputs["PhotoBucketName"]


REINDEX = """
import json, sys
import app
store = app.services.photo_store
store.photos.insert_one({"owner": "alice", "photo_id": "p1", "key": "photos/alice/p1.jpg",
                         "status": "indexed", "model_version": "old-bundle", "uploaded_at": "2026-11-24T00:00:00Z"})
print(json.dumps(app.reindex({"model_version": "new-bundle"}, None)))
"""


def test_the_reindex_function_runs_with_its_deployed_environment(cloud, tmp_path):
    """The reindex code, with the environment moto holds for the deployed function, sends to the
    stack's queue. The store is the embedded one: there is no Atlas here."""
    function = client("lambda", cloud["endpoint"]).get_function_configuration(FunctionName="memory-studio-dev-reindex")
    env = dict(cloud["env"], **function["Environment"]["Variables"])
    env.update(STORE_BACKEND="embedded", EMBEDDED_STORE_PATH=str(tmp_path / "store"))
    result = run([sys.executable, "-c", REINDEX], cloud["project"], env, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["enqueued"] == 1 and answer["model_version"] == "new-bundle"
    sqs = client("sqs", cloud["endpoint"])
    messages = sqs.receive_message(QueueUrl=cloud["outputs"]["PhotoEventsQueueUrl"], WaitTimeSeconds=1)["Messages"]
    body = json.loads(messages[0]["Body"])
    assert body["reindex"] == "new-bundle"
    assert body["Records"][0]["s3"]["bucket"]["name"] == cloud["outputs"]["PhotoBucketName"]
