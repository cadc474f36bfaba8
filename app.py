"""Memory Studio API and event handlers: wiring only, the logic is in chalicelib."""

import json
import os
import sys

from chalice import BadRequestError, Chalice, CognitoUserPoolAuthorizer, CORSConfig, Rate, Response
from chalice.app import Request

from chalicelib import LAMBDA_RUNTIMES, __version__
from chalicelib.clock import Deadline
from chalicelib.edge import api_docs, request_models
from chalicelib.edge.auth import bearer_token
from chalicelib.edge.http_errors import body_of, code_for_status, headers_of, status_of
from chalicelib.edge.web_client import asset, client_config
from chalicelib.errors import DomainError, Invalid
from chalicelib.observability import MetricUnit, flush_metrics, logger, metrics
from chalicelib.people import QUESTION_PEOPLE
from chalicelib.records import User
from chalicelib.reindex import enqueue
from chalicelib.services import Services


def runtime_refusal(version, argv) -> str | None:
    """Why a plain ``chalice deploy`` / ``chalice package`` must stop: Chalice gives the functions
    the runtime of the Python that runs it, and only LAMBDA_RUNTIMES are supported."""
    if not argv or not str(argv[0]).endswith("chalice") or not {"deploy", "package"} & set(argv[1:]):
        return None  # imported by the Lambda runtime, the local stack, the tests or our own wrapper
    runtime = f"python{version[0]}.{version[1]}"
    if runtime in LAMBDA_RUNTIMES:
        return None
    return (
        f"chalice on Python {version[0]}.{version[1]} would deploy {runtime} Lambdas; Memory Studio runs on "
        f"{' or '.join(LAMBDA_RUNTIMES)} (Amazon Linux 2023). Run `python -m infrastructure.lambda_runtime "
        f"{' '.join(argv[1:])}` (it builds for {LAMBDA_RUNTIMES[-1]} from any Python), or chalice from "
        "Python 3.12 or 3.13."
    )


if (_refusal := runtime_refusal(sys.version_info, sys.argv)) is not None:
    raise SystemExit(_refusal)

app = Chalice(app_name="memory-studio")
services = Services()

# API Gateway checks Cognito tokens in the cloud (the pool ARN comes from the
# stage's environment); the app verifies them again itself, see chalicelib/edge/auth.py.
_POOL_ARN = os.environ.get("COGNITO_USER_POOL_ARN")
authorizer = CognitoUserPoolAuthorizer("CognitoUsers", provider_arns=[_POOL_ARN]) if _POOL_ARN else None
cors = CORSConfig(
    allow_origin=os.environ.get("CORS_ALLOW_ORIGIN", "*"),
    allow_headers=["Authorization", "Content-Type"],
    max_age=600,
)


@app.middleware("http")
def json_errors(event, get_response):
    """Every failure leaves as ``{"error", "message"}``; never a stack trace."""
    context = app.lambda_context
    logger.append_keys(request_id=getattr(context, "aws_request_id", None), path=event.path)
    services.refresh()
    try:
        request_models.valid_unicode(event.query_params or {}, "query")
        request_models.valid_unicode(event.uri_params or {}, "path")
        response = get_response(event)
    except DomainError as exc:
        response = Response(body_of(exc), status_code=status_of(exc), headers=headers_of(exc))
    finally:
        logger.remove_keys(["user", "photo_id"])
        flush_metrics()
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and "Code" in body:
        # Chalice's own answers: unsupported content type, and any unhandled
        # exception (logged by Chalice, rendered without its trace).
        response.body = {"error": code_for_status(response.status_code), "message": str(body.get("Message", ""))}
    if isinstance(response.body, (dict, list)):
        response.headers.setdefault("Content-Type", "application/json")  # said, not left to the gateway
    if response.status_code >= 400:
        # Chalice adds the CORS headers to what a view returns, not to what it raises: without
        # them a browser hides every error from the web client.
        for name, value in cors.get_access_control_headers().items():
            response.headers.setdefault(name, value)
    return response


def request() -> Request:
    """The request being answered (Chalice sets it before a route runs)."""
    assert app.current_request is not None
    return app.current_request


def current_user() -> User:
    """The caller, from the request's verified Cognito token (401 otherwise)."""
    user = services.verifier.verify(bearer_token(request().headers))
    logger.append_keys(user=user.sub)
    return user


def json_body():
    """The request's JSON body (400 ``invalid_json`` when it is not JSON)."""
    try:
        body = request().json_body
    except (BadRequestError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise Invalid("body must be valid JSON", code="invalid_json") from None
    return request_models.valid_unicode(body)


def photo_ids() -> list[str]:
    """The ``{"photo_ids": [...]}`` body of the bulk photo routes."""
    return request_models.photo_ids(json_body(), services.settings.page_size_max)


def query_params() -> dict:
    """The request's query string as a dict (empty when there is none)."""
    return dict(request().query_params or {})


@app.route("/health", cors=cors)
def health():
    """``GET /health``: whether the store and the bucket answer (503 when one does not)."""
    checks: dict[str, dict] = {}
    for name, check in (
        ("store", lambda: services.photo_store.ping()),
        ("s3", lambda: services.object_storage.check()),
    ):
        try:
            check()
            checks[name] = {"ok": True}
        except Exception as exc:  # reported, not raised: this is the health page
            checks[name] = {"ok": False, "error": type(exc).__name__}
    ok = all(c["ok"] for c in checks.values())
    body = {
        "status": "ok" if ok else "degraded",
        "version": __version__,
        "stage": services.settings.stage,
        "dependencies": checks,
    }
    return Response(body, status_code=200 if ok else 503)


@app.route("/", methods=["GET"])
def web_client():
    """The browser client (no token needed to load it; every API call it makes carries one)."""
    return asset("index.html", services.settings)


@app.route("/web/{name}", methods=["GET"])
def web_file(name):
    """``GET /web/{name}``: a file of the web client, or its configuration (``config.json``)."""
    if name == "config.json":
        return client_config(services.settings, services.password_policy)
    return asset(name, services.settings)


@app.route("/openapi.yaml", methods=["GET"], cors=cors)
def openapi_description():
    """The API's description (OpenAPI 3.1), public like the web client."""
    return api_docs.spec()


@app.route("/docs", methods=["GET"])
def api_docs_page():
    """``GET /docs``: the API's reference page (Swagger UI over ``/openapi.yaml``)."""
    return api_docs.page()


@app.route("/photos/uploads", methods=["POST"], authorizer=authorizer, cors=cors)
def create_uploads():
    """``POST /photos/uploads``: a presigned upload form per file, or the photo it duplicates."""
    user = current_user()
    s = services.settings
    uploads = services.album.create_uploads(
        user, request_models.files_to_upload(json_body(), s.max_files_per_request, s.max_upload_bytes)
    )
    metrics.add_metric(name="UploadsRequested", unit=MetricUnit.Count, value=len(uploads))
    return Response({"uploads": uploads}, status_code=201)


@app.route("/photos/uploads/{photo_id}", methods=["DELETE"], authorizer=authorizer, cors=cors)
def cancel_upload(photo_id):
    """An upload the client gave up on: its pending photo is forgotten (409 once it has finished)."""
    services.album.cancel_upload(current_user(), photo_id)
    return Response(body="", status_code=204)


@app.route("/photos", methods=["GET"], authorizer=authorizer, cors=cors)
def list_photos():
    """``GET /photos``: the album's timeline, newest first, a page at a time."""
    s = services.settings
    page = request_models.timeline_page(query_params(), s.page_size_default, s.page_size_max)
    return services.album.list_photos(current_user(), page)


@app.route("/photos/months", methods=["GET"], authorizer=authorizer, cors=cors)
def photo_months():
    """``GET /photos/months``: how many photos each month of the timeline holds."""
    return services.album.months(current_user())


@app.route("/photos/status", methods=["POST"], authorizer=authorizer, cors=cors)
def photo_status():
    """``POST /photos/status``: the state of some photos (pending, indexed, failed, duplicate)."""
    return services.album.status(current_user(), photo_ids())


@app.route("/photos/{photo_id}", methods=["GET"], authorizer=authorizer, cors=cors)
def get_photo(photo_id):
    """``GET /photos/{photo_id}``: one photo with its faces and signed URLs."""
    return services.album.get_photo(current_user(), photo_id)


@app.route("/photos/{photo_id}", methods=["DELETE"], authorizer=authorizer, cors=cors)
def delete_photo(photo_id):
    """Into the trash (restorable for TRASH_DAYS); ``DELETE /trash/{photo_id}`` deletes for good."""
    services.album.trash_one(current_user(), photo_id)
    metrics.add_metric(name="PhotosTrashed", unit=MetricUnit.Count, value=1)
    return Response(body="", status_code=204)


@app.route("/photos/trash", methods=["POST"], authorizer=authorizer, cors=cors)
def trash_photos():
    """``POST /photos/trash``: move photos to the trash."""
    result = services.album.trash(current_user(), photo_ids())
    metrics.add_metric(name="PhotosTrashed", unit=MetricUnit.Count, value=len(result["trashed"]))
    return result


@app.route("/trash", methods=["GET"], authorizer=authorizer, cors=cors)
def list_trash():
    """``GET /trash``: the photos in the trash, most recently trashed first."""
    s = services.settings
    page = request_models.timeline_page(query_params(), s.page_size_default, s.page_size_max)
    return services.album.list_trash(current_user(), page)


@app.route("/trash", methods=["DELETE"], authorizer=authorizer, cors=cors)
def empty_trash():
    """``DELETE /trash``: delete everything in the trash for good."""
    result = services.album.empty_trash(current_user())
    metrics.add_metric(name="PhotosDeleted", unit=MetricUnit.Count, value=result["purged"])
    return result


@app.route("/trash/restore", methods=["POST"], authorizer=authorizer, cors=cors)
def restore_photos():
    """``POST /trash/restore``: bring photos back from the trash with their faces."""
    return services.album.restore(current_user(), photo_ids())


@app.route("/trash/{photo_id}", methods=["DELETE"], authorizer=authorizer, cors=cors)
def purge_photo(photo_id):
    """``DELETE /trash/{photo_id}``: delete one photo of the trash for good."""
    services.album.purge_one(current_user(), photo_id)
    metrics.add_metric(name="PhotosDeleted", unit=MetricUnit.Count, value=1)
    return Response(body="", status_code=204)


@app.route("/search/uploads", methods=["POST"], authorizer=authorizer, cors=cors)
def create_key_upload():
    """``POST /search/uploads``: a presigned form for a key photo (counted against the hourly limit)."""
    user = current_user()
    key_file = request_models.file_to_upload("body", json_body(), request_models.MAX_KEY_BYTES)
    return Response(services.face_search.create_key_upload(user, key_file), status_code=201)


@app.route("/search", methods=["POST"], authorizer=authorizer, cors=cors)
def search():
    """``POST /search``: the album's photos of a face (a key photo, an album face or a person)."""
    user = current_user()
    deadline = Deadline.for_lambda(app.lambda_context, cap=services.settings.api_time_budget)
    result = services.face_search.search(user, request_models.search_request(json_body()), deadline)
    metrics.add_metric(name="Searches", unit=MetricUnit.Count, value=1)
    return result


@app.route("/people", methods=["GET"], authorizer=authorizer, cors=cors)
def list_people():
    """``GET /people``: the album's people, biggest first."""
    return services.people.list_people(current_user(), request_models.people_page(query_params()))


@app.route("/people/merge", methods=["POST"], authorizer=authorizer, cors=cors)
def merge_people():
    """``POST /people/merge``: make several people one."""
    return services.people.merge(current_user(), request_models.merge_request(json_body()))


@app.route("/people/merge/{merge_id}", methods=["DELETE"], authorizer=authorizer, cors=cors)
def undo_merge(merge_id):
    """Undoes a merge (its ``merge_id``), once and within ten minutes."""
    return services.people.undo_merge(current_user(), merge_id)


@app.route("/people/recluster", methods=["POST"], authorizer=authorizer, cors=cors)
def recluster_people():
    """Regroup now (queued with no delay; the answer says so)."""
    return Response(services.people_jobs.request(current_user().sub, delay=0), status_code=202)


@app.route("/people/{person_id}", methods=["GET"], authorizer=authorizer, cors=cors)
def get_person(person_id):
    """``GET /people/{person_id}``: one person with their cover and counts."""
    return services.people.get_person(current_user(), person_id)


@app.route("/people/{person_id}", methods=["PATCH"], authorizer=authorizer, cors=cors)
def update_person(person_id):
    """``PATCH /people/{person_id}``: rename, hide or show a person."""
    return services.people.update_person(current_user(), person_id, request_models.person_update(json_body()))


@app.route("/people/{person_id}", methods=["DELETE"], authorizer=authorizer, cors=cors)
def delete_person(person_id):
    """``DELETE /people/{person_id}``: forget a person (their faces stay, unassigned)."""
    services.people.delete_person(current_user(), person_id)
    return Response(body="", status_code=204)


@app.route("/people/{person_id}/photos", methods=["GET"], authorizer=authorizer, cors=cors)
def person_photos(person_id):
    """``GET /people/{person_id}/photos``: a person's photos, newest first."""
    return services.people.person_photos(
        current_user(), person_id, request_models.timeline_page(query_params(), 30, 100)
    )


@app.route("/people/questions", methods=["GET"], authorizer=authorizer, cors=cors)
def album_questions():
    """``GET /people/questions``: the album's next "Is this …?" questions."""
    return services.people.album_questions(
        current_user(), request_models.query_limit(query_params(), 5, QUESTION_PEOPLE)
    )


@app.route("/people/{person_id}/suggestions", methods=["GET"], authorizer=authorizer, cors=cors)
def person_suggestions(person_id):
    """``GET /people/{person_id}/suggestions``: faces to confirm or reject for a person."""
    return services.people.suggestions(current_user(), person_id, request_models.query_limit(query_params(), 10, 50))


@app.route("/people/{person_id}/suggestions", methods=["POST"], authorizer=authorizer, cors=cors)
def answer_suggestions(person_id):
    """``POST /people/{person_id}/suggestions``: the owner's answers to a person's questions."""
    return services.people.answer(current_user(), person_id, request_models.answers(json_body()))


@app.route("/photos/{photo_id}/faces", methods=["POST"], authorizer=authorizer, cors=cors)
def add_face(photo_id):
    """``POST /photos/{photo_id}/faces``: a face the user drew a box around."""
    user = current_user()
    deadline = Deadline.for_lambda(app.lambda_context, cap=services.settings.api_time_budget)
    box = request_models.drawn_box(json_body())
    return Response(services.people.add_face(user, photo_id, box, deadline), status_code=201)


@app.route("/faces/{face_id}", methods=["DELETE"], authorizer=authorizer, cors=cors)
def remove_face(face_id):
    """``DELETE /faces/{face_id}``: a wrong face box goes (and stays gone after a reindex)."""
    services.people.remove_face(current_user(), face_id)
    return Response(body="", status_code=204)


@app.route("/faces/{face_id}/person", methods=["PUT"], authorizer=authorizer, cors=cors)
def set_face_person(face_id):
    """``PUT /faces/{face_id}/person``: say whose face it is, or whose it is not."""
    return services.people.set_face_person(current_user(), face_id, request_models.face_decision(json_body()))


@app.route("/me/sign-out", methods=["POST"], authorizer=authorizer, cors=cors)
def sign_out_everywhere():
    """Every device: the tokens issued until now are refused, refresh tokens stop working."""
    user = current_user()
    # Cognito's admin calls take the user's alias (the e-mail, the sign-in name) as well as the username.
    services.accounts.sign_out_everywhere(user.sub, user.email or user.username)
    return Response(body="", status_code=204)


@app.route("/me", methods=["GET"], authorizer=authorizer, cors=cors)
def about_me():
    """``GET /me``: the album's photo counts and storage against its limits."""
    return services.album.summary(current_user())


@app.route("/me", methods=["DELETE"], authorizer=authorizer, cors=cors)
def delete_me():
    """Idempotent: a repeated call (the same token, now of a deleted account) runs the deletion again."""
    user = services.verifier.verify(bearer_token(request().headers), allow_deleted=True)
    logger.append_keys(user=user.sub)
    services.accounts.delete(user)
    return Response(body="", status_code=204)


@app.lambda_function(name="cognito_post_confirmation")
def cognito_post_confirmation(event, context):
    """The user pool's post-confirmation trigger: a password reset ends every earlier sign-in, as
    signing out everywhere does. Cognito needs the event back."""
    if event.get("triggerSource") == "PostConfirmation_ConfirmForgotPassword":
        services.refresh()
        sub = event.get("request", {}).get("userAttributes", {}).get("sub")
        if sub:
            services.accounts.sign_out_everywhere(sub, event.get("userName"))
    return event


# S3 → SQS → this function (locally, local_stack's pump feeds the same handler).
# One message per invocation, so a photo whose face call keeps failing goes back
# to the queue alone, and after maxReceiveCount to the dead-letter queue.
@app.on_sqs_message(
    queue=os.environ.get("PHOTO_EVENTS_QUEUE", "memory-studio-photo-events"),
    batch_size=1,
    maximum_concurrency=int(os.environ.get("INDEXER_MAX_CONCURRENCY", "10")),
)
def index_photos(event):
    """S3 upload events (through SQS): index each photo, one message per invocation."""
    logger.remove_keys(["path", "user", "photo_id"])
    logger.append_keys(request_id=getattr(event.context, "aws_request_id", None))
    services.refresh()
    for record in event:
        deadline = Deadline.for_lambda(event.context, reserve=services.settings.indexer_reserve)
        outcomes = services.indexer.handle_notification(json.loads(record.body), deadline)
        logger.info("photo event handled", extra={"outcomes": outcomes})
        metrics.add_metric(name="PhotoEvents", unit=MetricUnit.Count, value=len(outcomes))
    flush_metrics()


# Regrouping jobs (chalicelib/people_jobs.py), one at a time per message; locally the same pump.
@app.on_sqs_message(queue=os.environ.get("PEOPLE_JOBS_QUEUE", "memory-studio-people-jobs"), batch_size=1)
def group_people(event):
    """Regrouping jobs (through SQS): regroup one owner's faces into people."""
    logger.remove_keys(["path", "user", "photo_id"])
    services.refresh()
    for record in event:
        outcome = services.people_jobs.handle(json.loads(record.body))
        logger.info("people job handled", extra={"outcome": outcome})
    flush_metrics()


# A large album's graph, one block of rows a message (chalicelib/graph_fanout.py): the workers never
# open the database; the last one asks the people-jobs queue to agglomerate.
@app.on_sqs_message(
    queue=os.environ.get("GRAPH_JOBS_QUEUE", "memory-studio-graph-jobs"),
    batch_size=1,
    maximum_concurrency=int(os.environ.get("GRAPH_WORKERS", "32")),
)
def graph_rows(event):
    """Graph jobs (through SQS): one block of rows of a fanned-out nearest-neighbour graph."""
    logger.remove_keys(["path", "user", "photo_id"])
    for record in event:
        outcome = services.graph_fanout.rows(json.loads(record.body))
        logger.info("graph block handled", extra={"outcome": outcome})
    flush_metrics()


@app.schedule(Rate(6, unit=Rate.HOURS), name="purge_trash")
def purge_trash(event):
    """Photos trashed more than TRASH_DAYS ago are deleted for good, with their objects and vectors;
    uploads asked for and never made are forgotten (no ghost tile, no count), whoever's they are."""
    services.refresh()
    purged = services.album.purge_expired(limit=1000)
    abandoned = services.album.expire_abandoned_uploads(limit=1000)
    logger.info("expired trash purged", extra={"photos": purged, "abandoned_uploads": abandoned})
    metrics.add_metric(name="PhotosDeleted", unit=MetricUnit.Count, value=purged)
    flush_metrics()
    return {"purged": purged, "abandoned_uploads": abandoned}


@app.lambda_function(name="reindex")
def reindex(event, context):
    """Send photos not yet embedded with the target bundle back through indexing.
    Event: {"model_version": optional (default: what the endpoint serves now), "owner": optional sub}."""
    services.refresh()
    queue_url = services.settings.events_queue_url
    if not queue_url:
        raise RuntimeError("PHOTO_EVENTS_QUEUE_URL is not set: there is no queue to send the photos to")
    target = event.get("model_version") or services.face_client.model_version()
    sent = enqueue(
        services.photo_store,
        services.client("sqs"),
        queue_url,
        services.settings.bucket,
        target,
        event.get("owner"),
    )
    return dict(services.photo_store.reindex_progress(target, event.get("owner")), enqueued=sent, model_version=target)
