"""Local AWS: a moto server with the bucket, queues and user pool the app needs."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import boto3

from chalicelib.stores.object_storage import PHOTOS
from infrastructure.stack import password_policy

REGION = "us-east-1"
# moto accepts any credentials; these keep boto3 from looking for real ones.
CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}


@dataclass
class StackInfo:
    """Where the running local stack's parts answer."""

    api_url: str
    region: str
    aws_endpoint_url: str
    bucket: str
    queue_url: str
    dlq_url: str
    user_pool_id: str
    user_pool_client_id: str
    jwks_url: str
    store_path: str
    endpoint_url: str = ""
    people_jobs_url: str = ""
    graph_jobs_url: str = ""

    def write(self, path: Path) -> None:
        """Save the stack's addresses for the other commands."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> StackInfo:
        """The addresses a running stack saved."""
        return cls(**json.loads(Path(path).read_text()))

    def app_environment(self) -> dict:
        """The environment the Chalice app reads (chalicelib.settings)."""
        return {
            "STAGE": "local",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "PHOTO_BUCKET": self.bucket,
            "COGNITO_USER_POOL_ID": self.user_pool_id,
            "COGNITO_CLIENT_IDS": self.user_pool_client_id,
            "COGNITO_JWKS_URL": self.jwks_url,
            "STORE_BACKEND": "embedded",
            "EMBEDDED_STORE_PATH": self.store_path,
            "POWERTOOLS_METRICS_DISABLED": "true",
            "FACE_ENDPOINT_URL": self.endpoint_url,
            "PHOTO_EVENTS_QUEUE_URL": self.queue_url,
            "PEOPLE_JOBS_QUEUE_URL": self.people_jobs_url,
            "GRAPH_JOBS_QUEUE_URL": self.graph_jobs_url,
            # Regroup a few seconds after the last upload (the cloud waits a minute).
            "REGROUP_DELAY": "3",
        }


def client(name: str, endpoint_url: str) -> Any:
    """A client of moto's server (typed where it is held)."""
    return boto3.client(name, region_name=REGION, endpoint_url=endpoint_url, **CREDENTIALS)  # type: ignore[call-overload]


def free_port() -> int:
    """A port nothing listens on now (for tests and benchmarks)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def provision(
    endpoint_url: str,
    bucket: str,
    api_url: str,
    store_path: str,
    cors_origins=("http://127.0.0.1:8000", "http://localhost:8000"),
    visibility_timeout: int = 60,
    max_receive_count: int = 5,
) -> StackInfo:
    """Create the bucket (CORS, S3→SQS notifications), the queue and the user pool."""
    s3 = client("s3", endpoint_url)
    sqs = client("sqs", endpoint_url)
    cognito = client("cognito-idp", endpoint_url)

    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": list(cors_origins),
                    "AllowedMethods": ["GET", "POST", "PUT"],
                    "AllowedHeaders": ["*"],
                    "MaxAgeSeconds": 600,
                }
            ]
        },
    )
    dlq_url = sqs.create_queue(QueueName=f"{bucket}-events-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"{bucket}-events",
        Attributes={
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    people_jobs_url = sqs.create_queue(
        QueueName=f"{bucket}-people-jobs", Attributes={"VisibilityTimeout": str(visibility_timeout)}
    )["QueueUrl"]
    graph_jobs_url = sqs.create_queue(
        QueueName=f"{bucket}-graph-jobs", Attributes={"VisibilityTimeout": str(visibility_timeout)}
    )["QueueUrl"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{PHOTOS}/"}]}},
                }
            ]
        },
    )

    pool = cognito.create_user_pool(
        PoolName="memory-studio-local",
        AutoVerifiedAttributes=["email"],
        UsernameAttributes=["email"],
        Policies={"PasswordPolicy": password_policy()},  # the cloud pool's rules, from its template
    )["UserPool"]
    app_client = cognito.create_user_pool_client(
        UserPoolId=pool["Id"],
        ClientName="memory-studio-web",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_SRP_AUTH"],
    )["UserPoolClient"]
    return StackInfo(
        api_url=api_url,
        region=REGION,
        aws_endpoint_url=endpoint_url,
        bucket=bucket,
        queue_url=queue_url,
        dlq_url=dlq_url,
        user_pool_id=pool["Id"],
        user_pool_client_id=app_client["ClientId"],
        jwks_url=f"{endpoint_url}/{pool['Id']}/.well-known/jwks.json",
        store_path=store_path,
        people_jobs_url=people_jobs_url,
        graph_jobs_url=graph_jobs_url,
    )


def create_confirmed_user(info: StackInfo, email: str, password: str) -> None:
    """Sign up a user in the local pool and confirm them."""
    cognito = client("cognito-idp", info.aws_endpoint_url)
    cognito.sign_up(
        ClientId=info.user_pool_client_id,
        Username=email,
        Password=password,
        UserAttributes=[{"Name": "email", "Value": email}],
    )
    cognito.admin_confirm_sign_up(UserPoolId=info.user_pool_id, Username=email)


def sign_in(info: StackInfo, email: str, password: str) -> dict:
    """Cognito's USER_PASSWORD_AUTH; returns IdToken, AccessToken, RefreshToken."""
    cognito = client("cognito-idp", info.aws_endpoint_url)
    result = cognito.initiate_auth(
        ClientId=info.user_pool_client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )
    return result["AuthenticationResult"]
