"""Before a deploy: what would fail in the cloud, said before anything is created (read-only).

    python -m infrastructure.preflight --stage prod            # the stage's configuration only
    python -m infrastructure.preflight --stage prod --aws      # and the account: region, runtime,
                                                                 quotas, the Atlas secret and cluster

Each check answers ``(name, ok, detail)``; the command prints them all and exits 1 if one failed. A
value the account does not let it read is a failure that says so, never a silent pass.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from chalicelib.stores.mongo_connection import uri_from_secret
from infrastructure.deployed import read_config

Check = tuple[str, bool, str]


def cors_origin(stage: str, environment: dict) -> Check:
    """A deployed stage names the one origin its web client is served from: never ``*``, which
    would let any page read a signed-in user's API answers through the user's browser."""
    origin = environment.get("CORS_ALLOW_ORIGIN", "")
    parts = urlsplit(origin)
    ok = parts.scheme == "https" and bool(parts.netloc) and not parts.path.strip("/") and "*" not in origin
    detail = origin if ok else f"{origin or 'nothing'}: set CORS_ALLOW_ORIGIN to https://<the web client's host>"
    return (f"{stage}: CORS origin", ok, detail)


def stage_checks(stage: str, config: dict) -> list[Check]:
    """What the stage's Chalice configuration alone can show."""
    environment = config["stages"][stage]["environment_variables"]
    return [cors_origin(stage, environment), network(stage, config["stages"][stage])]


def network(stage: str, stage_config: dict) -> Check:
    """How the functions reach Atlas: from no VPC (Atlas's access list must then admit any address,
    with TLS and the database user's password), or from the stack's private subnets through its NAT
    gateway's fixed address (``infrastructure.stack configure`` writes them)."""
    subnets, groups = stage_config.get("subnet_ids"), stage_config.get("security_group_ids")
    if subnets and groups:
        return (f"{stage}: network", True, f"private: {len(subnets)} subnets; Atlas admits the NAT's address only")
    if subnets or groups:
        return (f"{stage}: network", False, "subnet_ids and security_group_ids go together")
    return (f"{stage}: network", True, "public: Atlas's access list must admit 0.0.0.0/0 (TLS and password only)")


# Read-only account checks ---------------------------------------------------------------------
UNRESERVED_MINIMUM = 100  # Lambda keeps this much of the account's concurrency unreserved


def account_checks(stage: str, config: dict, session) -> list[Check]:
    """The account and the services the stage names, read and never changed."""
    stage_config = config["stages"][stage]
    environment = stage_config["environment_variables"]
    checks = [region(stage, environment, session.region_name), runtime()]
    for label, check in (
        ("Lambda concurrency", concurrency),
        ("GPU endpoint quota", endpoint_quota),
        ("Atlas", atlas_secret_and_cluster),
    ):
        try:
            ok, detail = check(stage_config, environment, session)
        except Exception as exc:  # noqa: BLE001 (a check that cannot read says so, and the rest go on)
            ok, detail = False, f"could not read: {type(exc).__name__}: {exc}"
        checks.append((f"{stage}: {label}", ok, detail))
    return checks


def region(stage: str, environment: dict, region_name: str | None) -> Check:
    """Whether the deploy's region is the user pool's."""
    configured = environment.get("COGNITO_USER_POOL_ARN", "").split(":")[3:4]
    if not region_name:
        return (f"{stage}: region", False, "no AWS region: export AWS_DEFAULT_REGION")
    ok = configured in ([region_name], [])
    return (f"{stage}: region", ok, region_name if ok else f"{region_name}, but the stage's pool is in {configured[0]}")


def runtime() -> Check:
    """Whether the Lambda runtime is still supported."""
    from datetime import date

    from infrastructure.lambda_runtime import TARGET
    from infrastructure.package_audit import runtime_supported

    _, ok, detail = runtime_supported(TARGET, date.today())
    return ("Lambda runtime", ok, detail)


def concurrency(stage_config: dict, environment: dict, session) -> tuple[bool, str]:
    """Whether the account's Lambda concurrency leaves room for the stage's reservations."""
    limits = session.client("lambda").get_account_settings()["AccountLimit"]
    reserved = sum(f.get("reserved_concurrency", 0) for f in stage_config.get("lambda_functions", {}).values())
    total = limits["ConcurrentExecutions"]
    ok = reserved + UNRESERVED_MINIMUM <= limits["UnreservedConcurrentExecutions"]
    detail = f"the stage reserves {reserved} of {limits['UnreservedConcurrentExecutions']} unreserved ({total} in all)"
    if not ok:
        detail += f"; Lambda keeps {UNRESERVED_MINIMUM} unreserved: ask for a higher concurrency quota"
    return ok, detail


def endpoint_quota(
    stage_config: dict, environment: dict, session, instance_type: str = "ml.g4dn.xlarge"
) -> tuple[bool, str]:
    """Whether the account may run the endpoint's instance type."""
    wanted = f"{instance_type} for endpoint usage"
    pages = session.client("service-quotas").get_paginator("list_service_quotas").paginate(ServiceCode="sagemaker")
    value = next((q["Value"] for page in pages for q in page["Quotas"] if q["QuotaName"] == wanted), None)
    if value is None:
        return False, f"no quota {wanted!r} applied to this account: ask for it"
    ok = value >= 1
    return ok, f"{wanted}: {value:g}" + ("" if ok else ": ask for at least 1")


def atlas_secret_and_cluster(stage_config: dict, environment: dict, session) -> tuple[bool, str]:
    """The secret holds a URI (not the stack's placeholder), and the cluster answers a ping from here."""
    from pymongo import MongoClient

    secret = session.client("secretsmanager").get_secret_value(SecretId=environment["MONGODB_SECRET_ID"])
    uri = uri_from_secret(secret["SecretString"])
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        return False, f"the secret holds {uri!r}, not a URI: put-secret-value it (runbook step 2)"
    client: MongoClient = MongoClient(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000)
    try:
        client.admin.command("ping")
    finally:
        client.close()
    path = network("", stage_config)[2].split(":")[0]
    return True, f"the cluster answers from here; the functions reach it by the {path} path"


def report(checks: list[Check]) -> int:
    """Print the checks; 1 if any failed."""
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'}  {name}: {detail}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def main(argv: list | None = None) -> int:
    """Check an account before a first deploy."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=["dev", "prod"])
    parser.add_argument("--aws", action="store_true", help="read the account too (its credentials, read-only)")
    args = parser.parse_args(argv)
    config = read_config()
    checks = stage_checks(args.stage, config)
    if args.aws:
        import boto3

        checks += account_checks(args.stage, config, boto3.session.Session())
    return report(checks)


if __name__ == "__main__":
    raise SystemExit(main())
