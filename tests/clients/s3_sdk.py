"""S3 SDKs (boto3, s3fs) against the gateway's own S3 API, driven by tests/s3_sdk.rs.

Usage: python s3_sdk.py CASE   (env: GW = gateway base URL, AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY = a key from `bordergate s3-key create`, AWS_CA_BUNDLE = the
gateway's certificate, and the case's own variables)

Prints one JSON line with what each SDK call returned, or the error text and code a user
of the SDK would see.
"""

import json
import os
import sys

GW = os.environ.get("GW", "")
CA = os.environ.get("AWS_CA_BUNDLE")


def client(secret=None, **config):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=GW,
        region_name="us-east-1",
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret or os.environ["AWS_SECRET_ACCESS_KEY"],
        verify=CA,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


def attempt(f):
    """What the user sees: the result, or the botocore error's code, status and text."""
    try:
        return {"ok": True, **f()}
    except Exception as e:  # the test checks what the user would see
        r = getattr(e, "response", None) or {}
        return {
            "ok": False,
            "type": type(e).__name__,
            "error": str(e),
            "code": r.get("Error", {}).get("Code"),
            "status": r.get("ResponseMetadata", {}).get("HTTPStatusCode"),
        }


def keys(resp):
    return [o["Key"] for o in resp.get("Contents", [])]


def boto3_case():
    import requests

    s3 = client()
    bucket, allowed, refused = os.environ["BUCKET"], os.environ["ALLOWED"], os.environ["REFUSED"]
    out = {}
    out["list"] = attempt(lambda: {"keys": keys(s3.list_objects_v2(Bucket=bucket))})
    out["list_delimiter"] = attempt(
        lambda: (lambda r: {"keys": keys(r), "prefixes": [p["Prefix"] for p in r.get("CommonPrefixes", [])], "key_count": r["KeyCount"]})(
            s3.list_objects_v2(Bucket=bucket, Delimiter="/")
        )
    )

    def paged():
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 1}))
        return {"pages": len(pages), "keys": [k for p in pages for k in keys(p)]}

    out["list_paged"] = attempt(paged)
    out["get"] = attempt(lambda: {"data": s3.get_object(Bucket=bucket, Key=allowed)["Body"].read().decode()})
    out["get_range"] = attempt(
        lambda: (lambda r: {"data": r["Body"].read().decode(), "content_range": r.get("ContentRange")})(
            s3.get_object(Bucket=bucket, Key=allowed, Range="bytes=0-3")
        )
    )
    out["head"] = attempt(lambda: {"length": s3.head_object(Bucket=bucket, Key=allowed)["ContentLength"]})
    out["get_refused"] = attempt(lambda: {"data": s3.get_object(Bucket=bucket, Key=refused)["Body"].read().decode()})

    def presigned(key, signer=client(signature_version="s3v4")):
        # boto3 presigns S3 URLs with Signature Version 2 unless told otherwise.
        url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
        r = requests.get(url, verify=CA, timeout=30)
        return {"status": r.status_code, "body": r.content.decode()}

    out["presigned"] = attempt(lambda: presigned(allowed))
    out["presigned_refused"] = attempt(lambda: presigned(refused))
    out["presigned_v2"] = attempt(lambda: presigned(allowed, signer=s3))
    out["wrong_secret"] = attempt(lambda: {"keys": keys(client(secret="not-the-secret").list_objects_v2(Bucket=bucket))})

    def skewed():
        import datetime
        from unittest import mock

        import botocore.auth

        late = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(hours=1)
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: late):
            return {"data": s3.get_object(Bucket=bucket, Key=allowed)["Body"].read().decode()}

    out["skewed"] = attempt(skewed)
    return out


def get_case():
    """Reads only (a store the gateway does not list): GetObject allowed and refused."""
    s3 = client()
    bucket, allowed, refused = os.environ["BUCKET"], os.environ["ALLOWED"], os.environ["REFUSED"]
    return {
        "get": attempt(lambda: {"data": s3.get_object(Bucket=bucket, Key=allowed)["Body"].read().decode()}),
        "get_range": attempt(lambda: {"data": s3.get_object(Bucket=bucket, Key=allowed, Range="bytes=4-7")["Body"].read().decode()}),
        "get_refused": attempt(lambda: {"data": s3.get_object(Bucket=bucket, Key=refused)["Body"].read().decode()}),
    }


def s3fs_case():
    import s3fs

    fs = s3fs.S3FileSystem(
        key=os.environ["AWS_ACCESS_KEY_ID"],
        secret=os.environ["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=GW,
        client_kwargs={"region_name": "us-east-1", "verify": CA},
        config_kwargs={"s3": {"addressing_style": "path"}},
        use_listings_cache=False,
    )
    bucket, allowed, refused = os.environ["BUCKET"], os.environ["ALLOWED"], os.environ["REFUSED"]
    out = {}
    out["ls"] = attempt(lambda: {"entries": sorted(fs.ls(bucket))})
    out["find"] = attempt(lambda: {"entries": sorted(fs.find(bucket))})
    out["cat"] = attempt(lambda: {"data": fs.cat(f"{bucket}/{allowed}").decode()})
    out["cat_refused"] = attempt(lambda: {"data": fs.cat(f"{bucket}/{refused}").decode()})
    return out


def main():
    print(json.dumps({"boto3": boto3_case, "get": get_case, "s3fs": s3fs_case}[sys.argv[1]]()), flush=True)


if __name__ == "__main__":
    main()
