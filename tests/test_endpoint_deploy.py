"""The endpoint deploy script against moto: publish a bundle, create, then roll the endpoint."""

import io
import json
import tarfile

import pytest

from gpu_endpoint.bundle import FORMAT
from local_stack.aws import client
from model_factory import deploy

ROLE = "arn:aws:iam::123456789012:role/memory-studio-sagemaker"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/memory-studio-faces:1"


def fake_bundle(tmp_path, version):
    bundle = tmp_path / version
    bundle.mkdir()
    (bundle / "manifest.json").write_text(json.dumps({"format": FORMAT, "version": version}))
    (bundle / "embedder.onnx").write_bytes(b"onnx bytes")
    return bundle


def test_publish_then_create_then_update(aws_stack, tmp_path, settings):
    s3 = client("s3", aws_stack.aws_endpoint_url)
    sagemaker = client("sagemaker", aws_stack.aws_endpoint_url)
    scaling = client("application-autoscaling", aws_stack.aws_endpoint_url)
    s3.create_bucket(Bucket="memory-studio-models")

    first = fake_bundle(tmp_path, "dlib-resnet-v1.aaaa")
    url = deploy.publish(s3, "memory-studio-models", first)
    assert url == "s3://memory-studio-models/models/dlib-resnet-v1.aaaa/model.tar.gz"
    body = s3.get_object(Bucket="memory-studio-models", Key="models/dlib-resnet-v1.aaaa/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == ["embedder.onnx", "manifest.json"]

    kwargs = dict(image=IMAGE, role=ROLE, endpoint="ms-test-faces", allowed_buckets=aws_stack.bucket)
    result = deploy.deploy(sagemaker, scaling, model_url=url, version="dlib-resnet-v1.aaaa", **kwargs)
    assert result["action"] == "created"
    model = sagemaker.describe_model(ModelName=result["config"])
    assert model["PrimaryContainer"]["ModelDataUrl"] == url
    assert model["PrimaryContainer"]["Environment"]["ALLOWED_S3_BUCKETS"] == aws_stack.bucket
    config = sagemaker.describe_endpoint_config(EndpointConfigName=result["config"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.g4dn.xlarge"

    # Re-run for the same version (after a failure, or by mistake): nothing is created twice.
    again = deploy.deploy(sagemaker, scaling, model_url=url, version="dlib-resnet-v1.aaaa", **kwargs)
    assert again == dict(result, action="unchanged")

    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    policy = next(p for p in policies if p["ResourceId"] == "endpoint/ms-test-faces/variant/AllTraffic")
    spec = policy["TargetTrackingScalingPolicyConfiguration"]
    assert spec["PredefinedMetricSpecification"]["PredefinedMetricType"] == "SageMakerVariantInvocationsPerInstance"


ENDPOINT = {
    "EndpointName": "ms-prod-faces",
    "EndpointArn": "arn:aws:sagemaker:us-east-1:1:endpoint/ms-prod-faces",
    "EndpointConfigName": "ms-prod-faces-dlib-resnet-v1-aaaa",
    "EndpointStatus": "InService",
    "CreationTime": "2026-01-01T00:00:00Z",
    "LastModifiedTime": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize("instance_type", ["ml.g4dn.xlarge", "ml.g5.xlarge"])
def test_a_new_bundle_updates_the_existing_endpoint(aws_stack, instance_type, monkeypatch):
    """moto has no UpdateEndpoint: the requests are checked with botocore's Stubber instead. The
    variant keeps its autoscaled count, the swap has guardrails, a new instance type deregisters
    scaling first, and scaling is registered again once the endpoint is InService."""
    from botocore.stub import ANY, Stubber

    sagemaker = client("sagemaker", aws_stack.aws_endpoint_url)
    scaling = client("application-autoscaling", aws_stack.aws_endpoint_url)
    name = "ms-prod-faces-dlib-resnet-v1-bbbb"
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InstanceType": instance_type,
        "InitialInstanceCount": 1,
        "InferenceAmiVersion": deploy.INFERENCE_AMI,
    }
    resource = "endpoint/ms-prod-faces/variant/AllTraffic"
    dimension = "sagemaker:variant:DesiredInstanceCount"
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=dimension, MinCapacity=1, MaxCapacity=9
    )
    with Stubber(sagemaker) as stub:
        stub.add_client_error("describe_model", "ValidationException", "Could not find model")
        stub.add_response(
            "create_model",
            {"ModelArn": f"arn:aws:sagemaker:us-east-1:1:model/{name}"},
            {"ModelName": name, "ExecutionRoleArn": ROLE, "PrimaryContainer": ANY},
        )
        stub.add_client_error(
            "describe_endpoint_config", "ValidationException", "Could not find endpoint configuration"
        )
        stub.add_response(
            "create_endpoint_config",
            {"EndpointConfigArn": f"arn:aws:sagemaker:us-east-1:1:endpoint-config/{name}"},
            {"EndpointConfigName": name, "ProductionVariants": [variant]},  # the driver's AMI, pinned
        )
        listed = {key: ENDPOINT[key] for key in ("EndpointName", "EndpointArn", "CreationTime", "LastModifiedTime")}
        stub.add_response(
            "list_endpoints",
            {"Endpoints": [dict(listed, EndpointStatus="InService")]},
            {"NameContains": "ms-prod-faces"},
        )
        stub.add_response("describe_endpoint", ENDPOINT, {"EndpointName": "ms-prod-faces"})
        serving = {
            "EndpointConfigName": ENDPOINT["EndpointConfigName"],
            "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:1:endpoint-config/old",
            "CreationTime": "2026-01-01T00:00:00Z",
            "ProductionVariants": [dict(variant, ModelName="old", InstanceType="ml.g4dn.xlarge")],
        }
        stub.add_response("describe_endpoint_config", serving, {"EndpointConfigName": ENDPOINT["EndpointConfigName"]})
        stub.add_response(
            "update_endpoint",
            {"EndpointArn": ENDPOINT["EndpointArn"]},
            {
                "EndpointName": "ms-prod-faces",
                "EndpointConfigName": name,
                "RetainAllVariantProperties": True,
                "DeploymentConfig": deploy.guardrails("ms-prod-faces-errors"),
            },
        )
        stub.add_response(
            "describe_endpoint", dict(ENDPOINT, EndpointStatus="Updating"), {"EndpointName": "ms-prod-faces"}
        )
        stub.add_response(
            "describe_endpoint", dict(ENDPOINT, EndpointConfigName=name), {"EndpointName": "ms-prod-faces"}
        )
        monkeypatch.setattr(deploy, "WAIT", {"Delay": 0, "MaxAttempts": 5})
        registered_while_updating = []
        original = scaling.register_scalable_target

        def register(**kwargs):
            registered_while_updating.append(len(stub._queue))  # responses still unread: 0 once InService
            return original(**kwargs)

        scaling.register_scalable_target = register
        result = deploy.deploy(
            sagemaker,
            scaling,
            model_url="s3://m/models/v/model.tar.gz",
            version="dlib-resnet-v1.bbbb",
            image=IMAGE,
            role=ROLE,
            endpoint="ms-prod-faces",
            instance_type=instance_type,
            rollback_alarm="ms-prod-faces-errors",
        )
        stub.assert_no_pending_responses()
    assert result == {"endpoint": "ms-prod-faces", "config": name, "action": "updated"}
    assert registered_while_updating == [0]
    target = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])["ScalableTargets"]
    assert target[0]["MaxCapacity"] == 4  # registered again with this deploy's bounds
    guard = deploy.guardrails("ms-prod-faces-errors")
    assert guard["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "ms-prod-faces-errors"}]}
    assert guard["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] >= 300  # time to bake before the old fleet goes


def test_the_images_cuda_fits_the_pinned_inference_ami():
    """The driver runs the image's CUDA only up to its own version (no compat libraries are mounted)."""
    import re
    from pathlib import Path

    dockerfile = (Path(__file__).resolve().parent.parent / "gpu_endpoint" / "Dockerfile").read_text()
    major, minor = (int(v) for v in re.search(r"FROM nvidia/cuda:(\d+)\.(\d+)\.", dockerfile).groups())
    assert (major, minor) <= deploy.INFERENCE_AMI_CUDA
    assert "FACE_ENGINE_REQUIRE_GPU=1" in dockerfile  # /ping fails on a GPU instance without CUDA
    assert not deploy.is_gpu("ml.c6i.xlarge") and deploy.is_gpu("ml.g4dn.xlarge") and deploy.is_gpu("ml.p4d.24xlarge")


def test_the_images_copy_of_the_code_imports(tmp_path):
    """The Dockerfile copies only the serving runtime (part of chalicelib/, gpu_endpoint/ without its
    model factory): the server must import from exactly that, lazy imports included."""
    import ast
    import re
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    dockerfile = (root / "gpu_endpoint" / "Dockerfile").read_text()
    copies = [
        line.split()[1:] for line in dockerfile.splitlines() if re.match(r"COPY (chalicelib|gpu_endpoint)/", line)
    ]
    for *sources, target in copies:
        for source in sources:
            destination = tmp_path / target / (Path(source).name if not source.endswith("/") else "")
            if source.endswith("/"):
                shutil.copytree(root / source, tmp_path / target, dirs_exist_ok=True)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(root / source, destination)
    result = subprocess.run(
        [sys.executable, "-c", "import gpu_endpoint.server, gpu_endpoint.serve"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    served = sorted(p.name for p in (tmp_path / "gpu_endpoint").iterdir())
    assert "factory" not in served and "engine.py" in served
    for module in (tmp_path / "gpu_endpoint").glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for imported in names:
                assert "factory" not in imported and "training" not in imported, (module.name, imported)


def test_the_backfill_endpoint_is_asynchronous_and_scales_on_its_backlog(aws_stack, tmp_path):
    sagemaker = client("sagemaker", aws_stack.aws_endpoint_url)
    scaling = client("application-autoscaling", aws_stack.aws_endpoint_url)
    answers, topic = f"s3://{aws_stack.bucket}/inference/answers/", "arn:aws:sns:us-east-1:123456789012:results"
    result = deploy.deploy(
        sagemaker,
        scaling,
        model_url="s3://m/models/v/model.tar.gz",
        version="dlib-resnet-v1.cccc",
        image=IMAGE,
        role=ROLE,
        endpoint="ms-test-faces-backfill",
        backfill=(answers, topic),
    )
    config = sagemaker.describe_endpoint_config(EndpointConfigName=result["config"])
    output = config["AsyncInferenceConfig"]["OutputConfig"]
    assert output["S3OutputPath"] == answers and output["NotificationConfig"] == {
        "SuccessTopic": topic,
        "ErrorTopic": topic,
    }
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    policy = next(p for p in policies if p["ResourceId"] == "endpoint/ms-test-faces-backfill/variant/AllTraffic")
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert metric["MetricName"] == "ApproximateBacklogSizePerInstance"
