"""boto3 plumbing for `blueox.store`: opening buckets and explaining failures.

boto3 is imported on first use, so reading local log files never pays for it.
Credentials, region and endpoint come from boto3's standard configuration
(environment, ``~/.aws``, instance roles), including ``AWS_ENDPOINT_URL`` and
``AWS_ENDPOINT_URL_S3`` for S3-compatible stores.
"""

from . import errors

__all__ = ["S3Error", "s3_resource", "as_bucket", "open_bucket", "describe_s3_error"]

# Seconds to wait for a connection: fail in reasonable time on a dead endpoint.
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60


class S3Error(errors.Error):
    """An S3 operation failed; the message is one line meant for a person."""


def s3_resource(endpoint_url=None):
    """A boto3 S3 resource; ``endpoint_url`` overrides the configured one."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
    return boto3.session.Session().resource(
        "s3", endpoint_url=endpoint_url or None, config=config
    )


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
