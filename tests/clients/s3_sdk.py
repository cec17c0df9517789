"""S3 SDKs (boto3, s3fs, pyarrow) against the gateway's own S3 API, driven by tests/s3_sdk.rs.

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
    if os.environ.get("MISSING"):
        # Allowed, then not found in the store, and a range past the end: S3's codes.
        out["get_missing"] = attempt(lambda: {"data": s3.get_object(Bucket=bucket, Key=os.environ["MISSING"])["Body"].read().decode()})
        out["get_past_end"] = attempt(
            lambda: {"data": s3.get_object(Bucket=bucket, Key=allowed, Range="bytes=99999999-")["Body"].read().decode()}
        )

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


def filesystem():
    """s3fs with the gateway as endpoint."""
    import s3fs

    return s3fs.S3FileSystem(
        key=os.environ["AWS_ACCESS_KEY_ID"],
        secret=os.environ["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=GW,
        client_kwargs={"region_name": "us-east-1", "verify": CA},
        config_kwargs={"s3": {"addressing_style": "path"}},
        use_listings_cache=False,
    )


def s3fs_case():
    fs = filesystem()
    bucket, allowed, refused = os.environ["BUCKET"], os.environ["ALLOWED"], os.environ["REFUSED"]
    out = {}
    out["ls"] = attempt(lambda: {"entries": sorted(fs.ls(bucket))})
    out["find"] = attempt(lambda: {"entries": sorted(fs.find(bucket))})
    out["cat"] = attempt(lambda: {"data": fs.cat(f"{bucket}/{allowed}").decode()})
    out["cat_refused"] = attempt(lambda: {"data": fs.cat(f"{bucket}/{refused}").decode()})
    return out


def listing(r):
    return {"keys": keys(r), "prefixes": [p["Prefix"] for p in r.get("CommonPrefixes", [])], "key_count": r["KeyCount"]}


def boto3_list_case():
    """Listings of a store behind the gateway (PREFIX: a key prefix holding the allowed
    object and MANY: one holding more objects than an upstream page), reads of the allowed
    and the refused object."""
    s3 = client()
    bucket, allowed, refused = os.environ["BUCKET"], os.environ["ALLOWED"], os.environ["REFUSED"]
    prefix, many = os.environ["PREFIX"], os.environ["MANY"]
    out = {}
    out["list"] = attempt(lambda: listing(s3.list_objects_v2(Bucket=bucket, Prefix=prefix)))
    out["list_delimiter"] = attempt(lambda: listing(s3.list_objects_v2(Bucket=bucket, Delimiter="/")))
    out["list_prefix_delimiter"] = attempt(lambda: listing(s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")))

    def paged(prefix, size):
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": size}))
        return {"pages": len(pages), "key_counts": [p["KeyCount"] for p in pages], "keys": [k for p in pages for k in keys(p)]}

    out["list_paged"] = attempt(lambda: paged(prefix, 1))
    out["list_many"] = attempt(lambda: paged(many, 1000))
    out["get"] = attempt(lambda: {"data": s3.get_object(Bucket=bucket, Key=allowed)["Body"].read().decode()})
    out["get_refused"] = attempt(lambda: {"data": s3.get_object(Bucket=bucket, Key=refused)["Body"].read().decode()})
    return out


def list_case():
    """One listing of the bucket, as the SDK user sees it."""
    return {"list": attempt(lambda: listing(client().list_objects_v2(Bucket=os.environ["BUCKET"])))}


def s3fs_list_case():
    """s3fs's ls of the bucket and of PREFIX, find of PREFIX, cat of the allowed and refused objects."""
    fs = filesystem()
    bucket, allowed, refused = os.environ["BUCKET"], os.environ["ALLOWED"], os.environ["REFUSED"]
    prefix = os.environ["PREFIX"].rstrip("/")
    return {
        "ls": attempt(lambda: {"entries": sorted(fs.ls(bucket))}),
        "ls_prefix": attempt(lambda: {"entries": sorted(fs.ls(f"{bucket}/{prefix}"))}),
        "find": attempt(lambda: {"entries": sorted(fs.find(f"{bucket}/{prefix}"))}),
        "cat": attempt(lambda: {"data": fs.cat(f"{bucket}/{allowed}").decode()}),
        "cat_refused": attempt(lambda: {"data": fs.cat(f"{bucket}/{refused}").decode()}),
    }


def pyarrow_case():
    """pyarrow's S3FileSystem with the gateway as endpoint (plain http): the files under
    PREFIX, the bucket's top level, a read of the allowed object and of the refused one."""
    from pyarrow import fs as pafs

    url = GW.split("://", 1)
    s3 = pafs.S3FileSystem(
        endpoint_override=url[1],
        scheme=url[0],
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region="us-east-1",
    )
    bucket, allowed, refused = os.environ["BUCKET"], os.environ["ALLOWED"], os.environ["REFUSED"]
    prefix = os.environ["PREFIX"].rstrip("/")

    def info(base, recursive):
        infos = s3.get_file_info(pafs.FileSelector(f"{bucket}/{base}".rstrip("/"), recursive=recursive))
        return {
            "files": sorted(i.path for i in infos if i.type == pafs.FileType.File),
            "dirs": sorted(i.path for i in infos if i.type == pafs.FileType.Directory),
            "sizes": {i.path: i.size for i in infos if i.type == pafs.FileType.File},
        }

    def read(key):
        with s3.open_input_stream(f"{bucket}/{key}") as f:
            return {"data": f.read().decode()}

    return {
        "files": attempt(lambda: info(prefix, True)),
        "top": attempt(lambda: info("", False)),
        "read": attempt(lambda: read(allowed)),
        "read_refused": attempt(lambda: read(refused)),
    }


def main():
    cases = {
        "boto3": boto3_case,
        "get": get_case,
        "s3fs": s3fs_case,
        "boto3_list": boto3_list_case,
        "list": list_case,
        "s3fs_list": s3fs_list_case,
        "pyarrow": pyarrow_case,
    }
    print(json.dumps(cases[sys.argv[1]]()), flush=True)


if __name__ == "__main__":
    main()
