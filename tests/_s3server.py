"""A real S3 API server (moto's) on a free loopback port, for tests.

One server is started per test process, on first use; each test makes its own
bucket so tests do not see each other's keys.
"""

import itertools
import logging
import os

__all__ = ["endpoint_url", "s3_resource", "make_bucket", "s3_env"]

_server = None
_bucket_numbers = itertools.count()

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


def endpoint_url():
    """The server's ``http://127.0.0.1:<port>``, starting it if needed."""
    global _server
    if _server is None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        _server = server
    host, port = _server.get_host_and_port()
    return f"http://{host}:{port}"


def s3_resource():
    """A boto3 S3 resource talking to the server with dummy credentials."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    return session.resource("s3", endpoint_url=endpoint_url())


def make_bucket(prefix="blueox-test"):
    """A new, empty bucket with a name no other test uses."""
    name = f"{prefix}-{os.getpid()}-{next(_bucket_numbers)}"
    bucket = s3_resource().Bucket(name)
    bucket.create()
    return bucket


def s3_env(base=None, **overrides):
    """An environment for a subprocess that reaches the server through boto3's
    standard configuration, with no trace of the user's own AWS setup."""
    env = dict(os.environ if base is None else base)
    for key in list(env):
        if key.startswith(("AWS_", "BLUEOX_")):
            del env[key]
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL_S3=endpoint_url(),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
