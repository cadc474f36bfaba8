"""``python -m local_stack up | user EMAIL PASSWORD | token EMAIL PASSWORD``.

``up`` starts moto's server, provisions bucket/queue/user pool, and serves the
Chalice API (with token verification) on the embedded store.  Every start is a
fresh stack: moto keeps its state in memory, so the embedded store is reset
with it and never points at objects or users that vanished.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from pathlib import Path

from gpu_endpoint.bundle import DEFAULT_DIR, Manifest

from .aws import StackInfo, create_confirmed_user, port_is_free, provision, sign_in
from .endpoint import EndpointProcess

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".local"
STACK_FILE = STATE / "stack.json"
GRAPH_WORKERS = 2  # local worker processes of a fanned-out regrouping (this machine: 2 cores)


def serve_api(host: str, port: int):
    """The Chalice app under Chalice's own local server, stage 'local'
    (settings come from the environment, see StackInfo.app_environment)."""
    import functools

    from chalice.cli.factory import CLIFactory
    from chalice.local import ChaliceRequestHandler, LocalChalice, LocalDevServer

    class RequestHandler(ChaliceRequestHandler):
        # An answer leaves in two writes (headers, body): with Nagle's algorithm on, each answer on
        # a kept-alive connection waited for the client's delayed ACK, about 40 ms.
        disable_nagle_algorithm = True

    factory = CLIFactory(project_dir=str(ROOT))
    config = factory.create_config_obj(chalice_stage_name="local")
    app = config.chalice_app
    if isinstance(app, LocalChalice):  # already adapted by an earlier server in this process
        server = LocalDevServer(app, config, host, port)
    else:
        server = factory.create_local_server(app, config, host, port)
    server.server.RequestHandlerClass = functools.partial(RequestHandler, app_object=server.app_object, config=config)
    return server


def start_pumps(info: StackInfo) -> list:
    """S3 notifications and people jobs (via SQS) into the same handlers the cloud's Lambdas run, and
    the trash's purge on its schedule."""
    import app as app_module

    from .aws import client
    from .pump import EventPump, Schedule, WorkerProcesses

    sqs = client("sqs", info.aws_endpoint_url)
    environment = {**os.environ, **info.app_environment()}
    pumps: list[EventPump | WorkerProcesses | Schedule] = [
        EventPump(sqs, info.queue_url, app_module.index_photos, info.region),
        EventPump(sqs, info.people_jobs_url, app_module.group_people, info.region),
        WorkerProcesses(environment, info.graph_jobs_url, "graph_rows", GRAPH_WORKERS, info.region),
        Schedule(app_module.purge_trash, every_s=6 * 3600, region=info.region),
    ]
    for pump in pumps:
        pump.start()
    return pumps


def up(args) -> int:
    """Start the local stack and keep it running until interrupted."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    for name, port, flag in (
        ("moto (AWS)", args.aws_port, "--aws-port"),
        ("API", args.port, "--port"),
        ("face endpoint", args.endpoint_port, "--endpoint-port"),
    ):
        if not port_is_free(args.host, port):
            print(
                f"error: port {port} for the {name} is already in use; stop what holds it or pass {flag}",
                file=sys.stderr,
            )
            return 2
    if not Manifest.exists(DEFAULT_DIR):
        print(
            f"error: no face model bundle in {DEFAULT_DIR}; build it with './dev setup' (needs ../shared/facedata)",
            file=sys.stderr,
        )
        return 2
    state = Path(args.state_dir)
    store_path = state / "store"
    shutil.rmtree(store_path, ignore_errors=True)  # fresh with moto's in-memory state

    moto = ThreadedMotoServer(ip_address=args.host, port=args.aws_port, verbose=False)
    moto.start()
    endpoint = f"http://{args.host}:{args.aws_port}"
    api_url = f"http://{args.host}:{args.port}"
    faces = None
    try:
        # The web client is served by the API, so its origin is the API's: browser uploads go from there.
        origins = (api_url, f"http://localhost:{args.port}")
        info = provision(endpoint, args.bucket, api_url, str(store_path), cors_origins=origins)
        faces = EndpointProcess(
            DEFAULT_DIR,
            args.host,
            args.endpoint_port,
            {**info.app_environment(), "ALLOWED_S3_BUCKETS": info.bucket},
            state / "endpoint.log",
        )
        faces.wait_ready()
        info.endpoint_url = faces.url
        info.write(state / "stack.json")
        os.environ.update(info.app_environment())
        server = serve_api(args.host, args.port)
        pumps = start_pumps(info)
    except Exception as exc:
        if faces:
            faces.stop()
        moto.stop()
        print(f"error: the local stack failed to start: {exc}", file=sys.stderr)
        return 1

    print(
        f"Memory Studio local stack\n  web client   {api_url}/\n  API          {api_url}\n  AWS (moto)   {endpoint}\n"
        f"  faces        {info.endpoint_url} (model bundle, CPU)\n  bucket       {info.bucket}\n"
        f"  user pool    {info.user_pool_id} (client {info.user_pool_client_id})\n"
        f"  store        {store_path} (embedded, reset at each start)\n  stack file   {state / 'stack.json'}\n"
        f"Open {api_url}/ and sign up (any confirmation code works locally), or create a user:\n"
        f"  python -m local_stack user you@example.com 'Passw0rd!'   then   python -m memstudio login you@example.com\n"
        f"Ctrl-C stops.",
        flush=True,
    )

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        for pump in pumps:
            pump.stop()
        faces.stop()
        moto.stop()
        print("stopped", flush=True)
    return 0


def user(args) -> int:
    """Create a confirmed user in the local user pool."""
    info = StackInfo.read(STACK_FILE)
    create_confirmed_user(info, args.email, args.password)
    print(f"created confirmed user {args.email} in {info.user_pool_id}")
    return 0


def token(args) -> int:
    """Print an ID token of a local user."""
    info = StackInfo.read(STACK_FILE)
    print(sign_in(info, args.email, args.password)["IdToken"])
    return 0


def reindex(args) -> int:
    """Re-embed photos with the bundle the local endpoint serves, with a progress bar."""
    import time

    from tqdm import tqdm

    import app as app_module

    info = StackInfo.read(STACK_FILE)
    os.environ.update(info.app_environment())
    result = app_module.reindex({"owner": args.owner, "model_version": args.model_version}, None)
    target = result["model_version"]
    print(f"{result['enqueued']} photos sent for reindexing with {target}")
    photo_store = app_module.services.photo_store
    with tqdm(total=result["total"], initial=result["done"], unit="photo") as bar:
        while bar.n < bar.total:
            time.sleep(1)
            state = photo_store.reindex_progress(target, args.owner)
            bar.total = state["total"]
            bar.update(state["done"] - bar.n)
    return 0


def main(argv=None) -> int:
    """``python -m local_stack``."""
    parser = argparse.ArgumentParser(
        prog="python -m local_stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the local stack")
    p_up.add_argument("--host", default="127.0.0.1")
    p_up.add_argument("--port", type=int, default=8000)
    p_up.add_argument("--aws-port", type=int, default=4566)
    p_up.add_argument("--endpoint-port", type=int, default=8080)
    p_up.add_argument("--bucket", default="memory-studio-local")
    p_up.add_argument("--state-dir", default=str(STATE), help="store, stack.json and logs (default .local)")
    p_up.set_defaults(func=up)
    for name, func, text in (("user", user, "create a confirmed user"), ("token", token, "print an ID token")):
        p = sub.add_parser(name, help=text)
        p.add_argument("email")
        p.add_argument("password")
        p.set_defaults(func=func)
    p_re = sub.add_parser("reindex", help="re-embed photos with the served bundle (resumable)")
    p_re.add_argument("--owner", default=None, help="only this user's photos (Cognito sub)")
    p_re.add_argument("--model-version", default=None, help="target bundle (default: what the endpoint serves)")
    p_re.set_defaults(func=reindex)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
