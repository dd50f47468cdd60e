"""oxstore's maintenance commands: zip, prune, upload and archive.

Each says on stderr why it had nothing to do (only with ``-v`` when
``quiet``, as ``archive`` is for cron), and draws its progress on a
terminal. Part of `blueox.cli.oxstore`, which re-exports it.
"""

import logging
import socket

from blueox import store
from blueox.cli import plural
from blueox.cli._progress import Progress

__all__ = ["do_zip", "do_prune", "BucketKeys", "do_upload", "do_archive", "is_are"]

log = logging.getLogger("blueox.oxstore")


def _nothing(quiet, message, *fields):
    """Say there was nothing to do: on stderr, or only with -v when ``quiet``."""
    log.log(logging.INFO if quiet else logging.WARNING, message, *fields)


def is_are(n):
    """``is`` for one, ``are`` for more."""
    return "is" if n == 1 else "are"


def do_zip(log_path, stderr=None, quiet=False):
    """Compress every finished log file; returns how many were zipped.

    When there is none, says why on stderr (only with -v when ``quiet``).
    """
    all_files = store.list_log_files(log_path)
    log_files = store.filter_log_files_for_zipping(all_files)
    if not log_files:
        if not all_files:
            _nothing(quiet, "nothing to zip: no log files in %s", log_path)
        else:
            zipped = sum(1 for lf in all_files if lf.bzip)
            _nothing(
                quiet, "nothing to zip in %s: of %s, %d zipped already and %d "
                "still being written (the newest of each type)",
                log_path, plural(len(all_files), "log file"), zipped,
                len(all_files) - zipped,
            )
        return 0
    progress = Progress.of_files("zip", log_files, stream=stderr)
    for log_file in log_files:
        log.info("Zipping %s", log_file.file_path)
        store.zip_log_file(log_file, log_path, progress=progress.add_bytes)
        progress.file_done()
    progress.finish()
    log.info("zipped %s in %s", plural(len(log_files), "file"), log_path)
    return len(log_files)


def do_prune(log_path, retain_days, quiet=False, can_remove=None):
    """Remove old date folders; returns how many were removed.

    When there is none, says so on stderr (only with -v when ``quiet``).
    """
    removed = store.prune_log_path(log_path, retain_days, can_remove=can_remove)
    if removed:
        log.info("removed %s from %s", plural(len(removed), "date folder"), log_path)
    else:
        _nothing(
            quiet, "nothing to prune in %s: no date folder older than %s to remove",
            log_path, plural(retain_days, "day"),
        )
    return len(removed)


class BucketKeys:
    """Which keys a bucket holds, listed once per date folder (not a HEAD per key)."""

    def __init__(self, bucket):
        self._bucket = bucket
        self._by_date = {}

    def __contains__(self, key):
        date_prefix = key.split("/", 1)[0] + "/"
        keys = self._by_date.get(date_prefix)
        if keys is None:
            keys = self._by_date[date_prefix] = {
                summary.key for summary in self._bucket.objects.filter(Prefix=date_prefix)
            }
        return key in keys


def do_upload(log_path, bucket, zipped_only, host=None, stderr=None, quiet=False):
    """Upload finished log files whose keys are not in the bucket yet.

    Returns how many were uploaded; when none, says why on stderr (only with
    -v when ``quiet``).
    """
    host = host or socket.gethostname()
    candidates = store.filter_log_files_for_uploading(
        store.list_log_files(log_path), zipped_only
    )
    in_bucket = BucketKeys(bucket)
    to_upload = []
    for log_file in candidates:
        remote = log_file.build_remote(log_file.host or host)
        if remote.file_path in in_bucket:
            log.debug("Skipping %s: already in the bucket", remote.file_path)
            continue
        to_upload.append((log_file, remote))
    if not to_upload:
        if not candidates:
            kind = "zipped log files (--zipped-only)" if zipped_only else "log files"
            _nothing(quiet, "nothing to upload: no finished %s in %s", kind, log_path)
        else:
            _nothing(
                quiet, "nothing to upload from %s: the %s %s already in bucket '%s'",
                log_path, plural(len(candidates), "finished file"),
                is_are(len(candidates)), bucket.name,
            )
        return 0

    progress = Progress.of_files("upload", to_upload, stream=stderr)
    for log_file, remote in to_upload:
        log.info("Uploading %s to %s", log_file.file_path, remote.file_path)
        bucket.upload_file(
            log_file.get_local_file_path(log_path), remote.file_path,
            Callback=progress.add_bytes,
        )
        progress.file_done()
    progress.finish()
    log.info("uploaded %s to bucket '%s'", plural(len(to_upload), "file"), bucket.name)
    return len(to_upload)


def do_archive(log_path, bucket, retain_days, host=None, stderr=None):
    """zip, upload the zipped files, then prune the date folders whose log
    files are all zipped and in the bucket (others are kept and named).

    Quiet when there is nothing to do, for cron; -v says what was done or not.
    """
    host = host or socket.gethostname()
    do_zip(log_path, stderr=stderr, quiet=True)
    do_upload(log_path, bucket, zipped_only=True, host=host, stderr=stderr, quiet=True)
    in_bucket = BucketKeys(bucket)

    def archived(folder):
        for log_file in store.list_log_files(folder):
            remote = log_file.build_remote(log_file.host or host)
            if not log_file.bzip or remote.file_path not in in_bucket:
                log.warning(
                    "Keeping %s: %s is not archived yet", folder, log_file.file_name
                )
                return False
        return True

    return do_prune(log_path, retain_days, quiet=True, can_remove=archived)
