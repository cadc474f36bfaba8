"""Moving a bucket of the first key layout (``users/{sub}/{kind}/{id}``) to ``{kind}/{sub}/{id}``.

Run once per stage, after the resources stack (whose notification now covers ``photos/`` only) and
the functions are deployed, with the stage's environment (as for ``chalicelib.ops.atlas_setup``)::

    python -m chalicelib.ops.layout_migration

Per legacy object of a photo with a record: the record is pointed at the new key first, then the
object is copied there, then the legacy object is deleted. The copy's notification reaches the
indexer, which finds the record and the unchanged ETag (nothing to redo) or, for a photo uploaded
while the old code still handed out legacy keys, indexes it then. Legacy objects no record owns and
legacy search keys (a day's life) are deleted. Re-runnable: it resumes with what is left under
``users/``. It refuses to run while the bucket still notifies ``users/``: the indexer would read the
deletions as photos deleted outside the API and forget them.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

from chalicelib.stores.object_storage import KEYS, PHOTOS, ObjectStorage
from chalicelib.stores.photo_store import PhotoStore

LEGACY_PREFIX = "users/"
_LEGACY_KEY = re.compile(
    r"^users/(?P<owner>[A-Za-z0-9-]+)/(?P<kind>photos|thumbs|keys)/(?P<name>(?P<id>[0-9a-f]{32})\.[a-z]+)$"
)


class NotificationStillLegacy(RuntimeError):
    """The bucket still notifies for the old key layout: migrating now would lose events."""

    pass


def notified_prefixes(object_storage: ObjectStorage) -> list[str]:
    """The key prefixes the bucket's event notifications filter on ("" for every key)."""
    config = object_storage.notification_configuration()
    prefixes = []
    targets = [
        *config.get("QueueConfigurations", []),
        *config.get("TopicConfigurations", []),
        *config.get("LambdaFunctionConfigurations", []),
    ]
    for target in targets:
        rules = target.get("Filter", {}).get("Key", {}).get("FilterRules", [])
        prefixes += [r.get("Value", "") for r in rules if r.get("Name", "").lower() == "prefix"] or [""]
    return prefixes


def migrate(object_storage: ObjectStorage, photo_store: PhotoStore) -> Counter:
    """Move every legacy object; how many of each outcome."""
    covering = [
        p for p in notified_prefixes(object_storage) if LEGACY_PREFIX.startswith(p) or p.startswith(LEGACY_PREFIX)
    ]
    if covering:
        raise NotificationStillLegacy(
            f"the bucket still notifies {covering}: deploy the resources stack first (docs/deploy.md)"
        )
    counts: Counter = Counter()
    for key in object_storage.list_keys(LEGACY_PREFIX):
        match = _LEGACY_KEY.match(key)
        if match is None:
            counts["left_unknown"] += 1  # not ours: an operator looks at it
            continue
        owner, kind, item = match["owner"], match["kind"], match["id"]
        photo = None if kind == KEYS else photo_store.get_photo(owner, item)
        if photo is None:
            object_storage.delete_keys([key])
            counts["deleted_keys" if kind == KEYS else "deleted_orphans"] += 1
            continue
        target = f"{kind}/{owner}/{match['name']}"
        field = "key" if kind == PHOTOS else "thumbnail_key"
        if photo.get(field) == key:
            photo_store.update_photo(owner, item, {field: target})
        object_storage.copy(key, target)
        object_storage.delete_keys([key])
        counts[f"moved_{kind}"] += 1
    return counts


def main() -> int:
    """Move every user's objects to the current key layout."""
    from chalicelib.services import Services

    services = Services()
    try:
        counts = migrate(services.object_storage, services.photo_store)
    except NotificationStillLegacy as exc:
        print(exc, file=sys.stderr)
        return 2
    print(", ".join(f"{name} {n}" for name, n in sorted(counts.items())) or "nothing under users/: done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
