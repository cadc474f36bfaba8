"""One IAM policy per Lambda function and stage, written from one table of grants.

Each function gets only what its code calls (``tests/test_infrastructure.py`` checks each call,
and each refusal, with an IAM policy evaluator). The files Chalice reads
(``.chalice/policy-<stage>-<function>.json``, named in each stage's ``lambda_functions``) are
written by this module from the stage's environment, never by hand:

    .venv/bin/python -m infrastructure.policies           # write them
    .venv/bin/python -m infrastructure.policies --check   # exit 1 if a file differs (a test runs it)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chalicelib.stores.object_storage import GRAPHS, INFERENCE, KEYS, KINDS, PHOTOS, PREVIEWS, THUMBS
from infrastructure.deployed import CHALICE_DIR, read_config

STAGES = ("dev", "prod")
QUEUE_CONSUMER = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"]


def grants(stage: str, env: dict) -> dict[str, dict]:
    """Every statement any function may need, by Sid, for one stage."""
    bucket = f"arn:aws:s3:::{env['PHOTO_BUCKET']}"
    photo_events = f"arn:aws:sqs:*:*:{env['PHOTO_EVENTS_QUEUE']}"
    people_jobs = f"arn:aws:sqs:*:*:{env['PEOPLE_JOBS_QUEUE']}"
    graph_jobs = f"arn:aws:sqs:*:*:{env['GRAPH_JOBS_QUEUE']}"
    return {
        "Logs": {
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"arn:aws:logs:*:*:log-group:/aws/lambda/memory-studio-{stage}*",
        },
        "AtlasSecret": {
            "Action": ["secretsmanager:GetSecretValue"],
            "Resource": f"arn:aws:secretsmanager:*:*:secret:{env['MONGODB_SECRET_ID']}-*",
        },
        "FaceEndpoint": {
            "Action": ["sagemaker:InvokeEndpoint"],
            "Resource": f"arn:aws:sagemaker:*:*:endpoint/{env['FACE_ENDPOINT_NAME']}",
        },
        # The API's presigned uploads: photos, and key photos with their expiry tag.
        "UploadTargets": {
            "Action": ["s3:PutObject"],
            "Resource": [f"{bucket}/{PHOTOS}/*", f"{bucket}/{KEYS}/*"],
        },
        "TagKeyPhotos": {"Action": ["s3:PutObjectTagging"], "Resource": f"{bucket}/{KEYS}/*"},
        # Presigned views, key photos' HeadObject, deletion of photos and accounts (the API).
        "ReadAndDeleteUserObjects": {
            "Action": ["s3:GetObject", "s3:DeleteObject"],
            "Resource": [f"{bucket}/{kind}/*" for kind in KINDS],
        },
        # The indexer reads photos; it removes orphaned photos and the thumbnails of deleted ones.
        "DeleteUserGraphs": {"Action": ["s3:DeleteObject"], "Resource": f"{bucket}/{GRAPHS}/*"},  # account deletion
        "ReadPhotos": {"Action": ["s3:GetObject"], "Resource": f"{bucket}/{PHOTOS}/*"},
        "DeletePhotosAndThumbnails": {  # and previews: what the indexer derives from a photo
            "Action": ["s3:DeleteObject"],
            "Resource": [f"{bucket}/{PHOTOS}/*", f"{bucket}/{THUMBS}/*", f"{bucket}/{PREVIEWS}/*"],
        },
        "WriteThumbnails": {"Action": ["s3:PutObject"], "Resource": [f"{bucket}/{THUMBS}/*", f"{bucket}/{PREVIEWS}/*"]},
        "ListUserPrefixes": {  # account deletion and the sweep list {kind}/{sub}/
            "Action": ["s3:ListBucket"],
            "Resource": bucket,
            "Condition": {"StringLike": {"s3:prefix": [f"{kind}/*" for kind in (*KINDS, GRAPHS)]}},
        },
        # HeadBucket (/health) carries no prefix; and HeadObject on a missing key answers 404 only
        # to a caller allowed s3:ListBucket (403 otherwise), which the indexer and the API rely on.
        "ListWithoutPrefix": {
            "Action": ["s3:ListBucket"],
            "Resource": bucket,
            "Condition": {"Null": {"s3:prefix": "true"}},
        },
        "ReadPasswordRules": {"Action": ["cognito-idp:DescribeUserPool"], "Resource": env["COGNITO_USER_POOL_ARN"]},
        "DeleteOwnAccount": {
            "Action": ["cognito-idp:AdminDeleteUser", "cognito-idp:AdminUserGlobalSignOut"],
            "Resource": env["COGNITO_USER_POOL_ARN"],
        },
        # A password reset (the pool's post-confirmation trigger) ends the user's other sign-ins.
        "SignOutEverywhere": {
            "Action": ["cognito-idp:AdminUserGlobalSignOut"],
            "Resource": env["COGNITO_USER_POOL_ARN"],
        },
        # The backfill endpoint (chalicelib/backfill.py): requests written, answers read, both removed.
        "Backfill": {
            "Action": ["sagemaker:InvokeEndpointAsync"],
            "Resource": f"arn:aws:sagemaker:*:*:endpoint/{env.get('BACKFILL_ENDPOINT_NAME') or 'none'}",
        },
        "BackfillObjects": {
            "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
            "Resource": [f"{bucket}/{INFERENCE}/requests/*", f"{bucket}/{INFERENCE}/answers/*"],
        },
        "ConsumePhotoEvents": {"Action": QUEUE_CONSUMER, "Resource": photo_events},
        "SendPhotoEvents": {"Action": ["sqs:SendMessage"], "Resource": photo_events},
        "ConsumePeopleJobs": {"Action": QUEUE_CONSUMER, "Resource": people_jobs},
        "SendPeopleJobs": {"Action": ["sqs:SendMessage"], "Resource": people_jobs},
        # A large album's fanned-out graph (chalicelib/graph_fanout.py): the regrouping writes its
        # inputs, reads the blocks and removes it all; a worker reads the inputs and writes its block.
        "GraphObjects": {
            "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
            "Resource": f"{bucket}/{GRAPHS}/*",
        },
        "GraphBlocks": {"Action": ["s3:PutObject", "s3:GetObject"], "Resource": f"{bucket}/{GRAPHS}/*"},
        "ListGraphs": {
            "Action": ["s3:ListBucket"],
            "Resource": bucket,
            "Condition": {"StringLike": {"s3:prefix": [f"{GRAPHS}/*"]}},
        },
        "ConsumeGraphJobs": {"Action": QUEUE_CONSUMER, "Resource": graph_jobs},
        "SendGraphJobs": {"Action": ["sqs:SendMessage"], "Resource": graph_jobs},
    }


# Metrics travel in the logs (Powertools' embedded metric format): no cloudwatch:PutMetricData.
COMMON = ["Logs", "AtlasSecret", "FaceEndpoint"]
FUNCTIONS = {
    "api_handler": COMMON
    + [
        "UploadTargets",
        "TagKeyPhotos",
        "ReadAndDeleteUserObjects",
        "ListUserPrefixes",
        "DeleteUserGraphs",
        "ListWithoutPrefix",
        "ReadPasswordRules",
        "DeleteOwnAccount",
        "SendPeopleJobs",
    ],
    "index_photos": COMMON
    + [
        "ReadPhotos",
        "DeletePhotosAndThumbnails",
        "WriteThumbnails",
        "ListWithoutPrefix",
        "ConsumePhotoEvents",
        "SendPeopleJobs",
    ],
    "reindex": COMMON + ["SendPhotoEvents"],
    "group_people": COMMON + ["ConsumePeopleJobs", "GraphObjects", "ListGraphs", "SendGraphJobs"],
    "graph_rows": ["Logs", "GraphBlocks", "ListGraphs", "ConsumeGraphJobs", "SendPeopleJobs"],
    "purge_trash": ["Logs", "AtlasSecret", "DeletePhotosAndThumbnails"],
    "cognito_post_confirmation": ["Logs", "AtlasSecret", "SignOutEverywhere"],
}


def policy_file(stage: str, function: str) -> str:
    """The file name of a function's IAM policy for a stage."""
    return f"policy-{stage}-{function}.json"


# A function in the stack's private subnets (the private network path) manages its network interfaces.
VPC_NETWORKING = {
    "Action": [
        "ec2:CreateNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ],
    "Resource": "*",
}


# Granted to the indexer only in a stage that names a backfill endpoint.
BACKFILL = ["Backfill", "BackfillObjects"]


def policy(stage: str, env: dict, function: str, in_vpc: bool = False) -> dict:
    """A function's IAM policy for a stage: only the grants it needs."""
    table = grants(stage, env)
    sids = FUNCTIONS[function] + (BACKFILL if function == "index_photos" and env.get("BACKFILL_ENDPOINT_NAME") else [])
    statements = [{"Sid": sid, "Effect": "Allow", **table[sid]} for sid in sids]
    if in_vpc:
        statements.append({"Sid": "VpcNetworking", "Effect": "Allow", **VPC_NETWORKING})
    return {"Version": "2012-10-17", "Statement": statements}


def rendered(config: dict) -> dict[str, str]:
    """File name → text, for every stage and function of ``.chalice/config.json``."""
    out = {}
    for stage in STAGES:
        env = config["stages"][stage]["environment_variables"]
        in_vpc = bool(config["stages"][stage].get("subnet_ids"))
        for function in FUNCTIONS:
            out[policy_file(stage, function)] = json.dumps(policy(stage, env, function, in_vpc), indent=2) + "\n"
    return out


def write(config: dict, chalice_dir: Path = CHALICE_DIR, check: bool = False) -> list[str]:
    """Write every file that differs from ``config``'s (only list them with ``check``); their names."""
    stale = []
    for name, text in rendered(config).items():
        path = chalice_dir / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not check:
            path.write_text(text)
            print(f"wrote {path}")
    return stale


def main(argv=None) -> int:
    """Write each stage's IAM policies (``--check``: fail if one is stale)."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = write(read_config(), check=check)
    if check and stale:
        print(f"out of date (run python -m infrastructure.policies): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
