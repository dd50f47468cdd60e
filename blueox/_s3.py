"""boto3 plumbing for `blueox.store`: opening buckets and explaining failures.

boto3 is imported on first use, so reading local log files never pays for it.
Credentials, region and endpoint come from boto3's standard configuration
(environment, ``~/.aws``, instance roles), including ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_S3`` for S3-compatible stores.
"""

import os
import re
from urllib.parse import urlsplit

from . import errors

__all__ = [
    "S3Error",
    "BadEndpointError",
    "endpoint_url_problem",
    "check_endpoint_url",
    "configured_endpoint_url",
    "s3_resource",
    "as_bucket",
    "open_bucket",
    "describe_s3_error",
]

# What a URL missing its scheme looks like: a host with a dot or a port.
_HOST_PORT = re.compile(r"[\w.\-]*\.[\w.\-]+(:\d+)?|[\w.\-]+:\d+")

# The environment variables boto3 reads an S3 endpoint from, first match wins.
ENDPOINT_URL_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")

# Seconds to wait for a connection: fail in reasonable time on a dead endpoint.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60


class S3Error(errors.Error):
    """An S3 operation failed; the message is one line meant for a person."""


class BadEndpointError(S3Error):
    """The S3 endpoint URL given or configured is not an http(s) URL (a usage
    error, not a failure of S3)."""


def endpoint_url_problem(url):
    """Why ``url`` cannot be an S3 endpoint, or None when it can.

    An endpoint is ``http://`` or ``https://``, a host name, and an optional
    port; ``127.0.0.1:9000`` (no scheme) is the usual mistake.
    """
    if not url.strip() or any(c.isspace() for c in url):
        return "is not an http(s) URL"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "://" not in url:
        if _HOST_PORT.fullmatch(url):
            return f"is not an http(s) URL (did you mean 'http://{url}'?)"
        return "is not an http(s) URL"
    try:
        parts.port
    except ValueError:
        return "has a bad port"
    if not parts.hostname:
        return "has no host name"
    return None


def check_endpoint_url(url, source):
    """Raise `BadEndpointError` naming ``source`` (an option or a variable)
    when ``url`` is not an http(s) URL."""
    problem = endpoint_url_problem(url)
    if problem is not None:
        raise BadEndpointError(
            f"{source} {url!r} {problem}: use http://host:port or https://host"
        )


def configured_endpoint_url(environ=None):
    """``(url, variable)`` of the endpoint boto3 takes from the environment,
    or ``(None, None)``; ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`` turns
    them off as it does for boto3."""
    environ = os.environ if environ is None else environ
    if environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true":
        return None, None
    for variable in ENDPOINT_URL_VARIABLES:
        if environ.get(variable):
            return environ[variable], variable
    return None, None


def s3_resource(endpoint_url=None):
    """A boto3 S3 resource; ``endpoint_url`` overrides the configured one.

    Raises `BadEndpointError` when the endpoint (``endpoint_url``, else
    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``, else the AWS
    configuration files) is not an http(s) URL.
    """
    import boto3
    from botocore.config import Config

    if endpoint_url:
        check_endpoint_url(endpoint_url, "endpoint URL")
    else:
        url, variable = configured_endpoint_url()
        if url is not None:
            check_endpoint_url(url, variable)
    config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
    try:
        return boto3.session.Session().resource(
            "s3", endpoint_url=endpoint_url or None, config=config
        )
    except ValueError as e:
        # botocore's own check, e.g. of an endpoint_url in ~/.aws/config.
        if not str(e).startswith("Invalid endpoint"):
            raise
        raise BadEndpointError(
            f"{e}: use http://host:port or https://host (check endpoint_url in "
            "the AWS configuration)"
        ) from None


def as_bucket(bucket):
    """A boto3 ``Bucket`` from a bucket or a bucket name."""
    if isinstance(bucket, str):
        return s3_resource().Bucket(bucket)
    return bucket


def open_bucket(bucket_name, endpoint_url=None):
    """The boto3 ``Bucket`` named ``bucket_name``, checked to be reachable.

    Raises `S3Error` saying what is wrong (no such bucket, no credentials,
    endpoint unreachable, access denied).
    """
    resource = s3_resource(endpoint_url)
    bucket = resource.Bucket(bucket_name)
    try:
        resource.meta.client.head_bucket(Bucket=bucket_name)
    except Exception as e:
        message = describe_s3_error(e, bucket)
        if message is None:
            raise
        raise S3Error(message) from None
    return bucket


def describe_s3_error(exc, bucket=None):
    """One line saying what an exception from boto3 means, or None.

    None means the exception is not one of boto3's (a bug to be shown whole).
    """
    from boto3.exceptions import Boto3Error
    from botocore import exceptions as bx

    name = getattr(bucket, "name", bucket)
    where = f"bucket {name!r}" if name else "S3"
    if isinstance(exc, bx.NoCredentialsError):
        return (
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an instance role"
        )
    if isinstance(
        exc,
        (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionClosedError),
    ):
        return f"cannot reach S3: {exc}"
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchBucket"):
            return f"{where} does not exist"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
            return f"S3 rejected the credentials ({code}) for {where}"
        if code in ("403", "AccessDenied") or status == 403:
            return f"access denied to {where}"
        message = error.get("Message") or exc
        return f"S3 error on {where}: {code or status}: {message}"
    if isinstance(exc, (bx.BotoCoreError, Boto3Error)):
        return f"S3 error on {where}: {exc}"
    return None
