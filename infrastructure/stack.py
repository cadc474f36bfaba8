"""The resources stack (``infrastructure/resources.yaml``): deploy it, and hand its outputs to Chalice.

    python -m infrastructure.stack deploy --stage prod [--web-origin URL]
    python -m infrastructure.stack configure --stage prod

``deploy`` creates the stack or updates it in place and waits; an update that changes nothing is
not an error, so the step can be re-run. ``configure`` writes the outputs Chalice needs (bucket,
queues, user pool and app client) into the stage of ``.chalice/config.json`` and re-renders the
stage's IAM policies from them: no value is copied by hand. boto3 honours ``AWS_ENDPOINT_URL``, which
is how ``tests/test_deploy_path.py`` runs both against moto's server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ClientError

from infrastructure import policies

if TYPE_CHECKING:
    from types_boto3_cloudformation import CloudFormationClient
    from types_boto3_cloudformation.literals import CapabilityType
    from types_boto3_cloudformation.type_defs import ParameterTypeDef, WaiterConfigTypeDef

TEMPLATE = Path(__file__).with_name("resources.yaml")
CAPABILITIES: list[CapabilityType] = ["CAPABILITY_IAM"]
WAITER: WaiterConfigTypeDef = {"Delay": 5, "MaxAttempts": 720}  # an hour
# Chalice environment variable ← the stack output that holds it.
CONFIG_FROM_OUTPUTS = {
    "PHOTO_BUCKET": "PhotoBucketName",
    "COGNITO_USER_POOL_ID": "UserPoolId",
    "COGNITO_USER_POOL_ARN": "UserPoolArn",
    "COGNITO_CLIENT_IDS": "UserPoolClientId",
    "PHOTO_EVENTS_QUEUE_URL": "PhotoEventsQueueUrl",
    "PEOPLE_JOBS_QUEUE_URL": "PeopleJobsQueueUrl",
    "GRAPH_JOBS_QUEUE_URL": "GraphJobsQueueUrl",
}
# The event sources Chalice subscribes take the queue's name: the last segment of its URL.
QUEUE_NAMES_FROM_URLS = {
    "PHOTO_EVENTS_QUEUE": "PHOTO_EVENTS_QUEUE_URL",
    "PEOPLE_JOBS_QUEUE": "PEOPLE_JOBS_QUEUE_URL",
    "GRAPH_JOBS_QUEUE": "GRAPH_JOBS_QUEUE_URL",
}


def password_policy() -> dict:
    """The user pool's password rules as the template sets them (the local stack's pool copies them)."""
    from cfnlint.decode import cfn_yaml  # reads CloudFormation's tags (!Ref, !Sub, ...)

    rules = cfn_yaml.load(str(TEMPLATE))["Resources"]["UserPool"]["Properties"]["Policies"]["PasswordPolicy"]
    return json.loads(json.dumps(rules))  # plain values, not the parser's nodes


def stack_name(stage: str) -> str:
    """The CloudFormation stack of a stage."""
    return f"memory-studio-{stage}"


def _status(cloudformation: CloudFormationClient, name: str) -> str | None:
    """The stack's status; None when there is none (never created, or deleted)."""
    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    status = stacks[0]["StackStatus"] if stacks else None
    return None if status == "DELETE_COMPLETE" else status


def _exists(cloudformation: CloudFormationClient, name: str) -> bool:
    """Whether there is a stack to update. A first create that failed and rolled back
    (ROLLBACK_COMPLETE) can only be deleted: it is, and the next create starts clean (its
    retained resources are kept on create only when the create succeeded: RetainExceptOnCreate)."""
    status = _status(cloudformation, name)
    if status == "ROLLBACK_COMPLETE":
        print(f"{name}: its first create rolled back; deleting it to create it again", file=sys.stderr)
        cloudformation.delete_stack(StackName=name)
        cloudformation.get_waiter("stack_delete_complete").wait(StackName=name, WaiterConfig=WAITER)
        return False
    return status is not None


def deploy(
    cloudformation: CloudFormationClient,
    stage: str,
    web_origin: str | None = None,
    post_confirmation_arn: str | None = None,
    alarm_email: str | None = None,
    network_mode: str | None = None,
    ses: tuple[str, str] | None = None,
) -> dict[str, str]:
    """Create or update the stage's stack, wait for it, and return its outputs.

    Without ``web_origin`` (``post_confirmation_arn``, ``alarm_email``, ``network_mode``, ``ses``: the identity's ARN
    and the From address) an update keeps the value
    the stack has: the template's default on the first run."""
    name = stack_name(stage)
    parameters: list[ParameterTypeDef] = [{"ParameterKey": "Stage", "ParameterValue": stage}]
    given = {
        "WebOrigin": web_origin,
        "PostConfirmationFunctionArn": post_confirmation_arn,
        "AlarmEmail": alarm_email,
        "NetworkMode": network_mode,
        "SesIdentityArn": ses[0] if ses else None,
        "SesFromAddress": ses[1] if ses else None,
    }
    parameters += [{"ParameterKey": key, "ParameterValue": value} for key, value in given.items() if value]
    template = TEMPLATE.read_text()
    if not _exists(cloudformation, name):
        cloudformation.create_stack(
            StackName=name, TemplateBody=template, Capabilities=CAPABILITIES, Parameters=parameters
        )
        cloudformation.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig=WAITER)
    else:
        parameters += [{"ParameterKey": key, "UsePreviousValue": True} for key, value in given.items() if not value]
        try:
            cloudformation.update_stack(
                StackName=name, TemplateBody=template, Capabilities=CAPABILITIES, Parameters=parameters
            )
        except ClientError as error:
            if "No updates are to be performed" not in str(error):
                raise
        else:
            cloudformation.get_waiter("stack_update_complete").wait(StackName=name, WaiterConfig=WAITER)
    return outputs(cloudformation, stage)


def outputs(cloudformation: CloudFormationClient, stage: str) -> dict[str, str]:
    """The stage stack's outputs by key."""
    stack = cloudformation.describe_stacks(StackName=stack_name(stage))["Stacks"][0]
    return {item["OutputKey"]: item["OutputValue"] for item in stack.get("Outputs", [])}


def stage_environment(stack_outputs: dict[str, str]) -> dict[str, str]:
    """The Chalice environment variables the stack decides."""
    missing = sorted(set(CONFIG_FROM_OUTPUTS.values()) - set(stack_outputs))
    if missing:
        raise SystemExit(f"the stack has no output {', '.join(missing)}: deploy it first (infrastructure.stack deploy)")
    env = {variable: stack_outputs[output] for variable, output in CONFIG_FROM_OUTPUTS.items()}
    for variable, url_variable in QUEUE_NAMES_FROM_URLS.items():
        env[variable] = env[url_variable].rstrip("/").rsplit("/", 1)[-1]
    return env


def configure(stage: str, stack_outputs: dict[str, str], chalice_dir: Path = policies.CHALICE_DIR) -> dict:
    """Write the stack's values into the stage's config and re-render its policies; the new config.
    A stack on the private network path puts the functions in its private subnets."""
    config_path = chalice_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["stages"][stage]["environment_variables"].update(stage_environment(stack_outputs))
    if "PrivateSubnetIds" in stack_outputs:
        config["stages"][stage]["subnet_ids"] = stack_outputs["PrivateSubnetIds"].split(",")
        config["stages"][stage]["security_group_ids"] = [stack_outputs["FunctionsSecurityGroupId"]]
    else:
        config["stages"][stage].pop("subnet_ids", None)
        config["stages"][stage].pop("security_group_ids", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    policies.write(config, chalice_dir)
    return config


def main(argv: list | None = None) -> int:
    """Deploy the stage's stack, or configure the stage's Chalice settings from its outputs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["deploy", "configure"])
    parser.add_argument("--stage", required=True, choices=policies.STAGES)
    parser.add_argument("--web-origin", help="deploy: the origin allowed to upload to the bucket (the API's)")
    parser.add_argument(
        "--post-confirmation-arn", help="deploy: the cognito_post_confirmation function (after chalice deploy)"
    )
    parser.add_argument("--alarm-email", help="deploy: the address the alarms are sent to")
    parser.add_argument("--network-mode", choices=["public", "private"], help="deploy: how the functions reach Atlas")
    parser.add_argument(
        "--ses", nargs=2, metavar=("IDENTITY_ARN", "FROM"), help="deploy: the user pool's e-mails through SES"
    )
    args = parser.parse_args(argv)
    cloudformation = boto3.client("cloudformation")
    if args.action == "deploy":
        created = deploy(
            cloudformation,
            args.stage,
            args.web_origin,
            args.post_confirmation_arn,
            args.alarm_email,
            args.network_mode,
            tuple(args.ses) if args.ses else None,
        )
        print(json.dumps(created, indent=2))
    else:
        configure(args.stage, outputs(cloudformation, args.stage))
        print(f"wrote the stack's outputs into .chalice/config.json (stage {args.stage}) and its policies")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
