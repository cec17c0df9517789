"""Real ML-pipeline clients, driven by tests/clients.rs against the gateway.

Usage: python clients.py CASE ARG...   (env: GW = gateway base URL, TOKEN = bordergate token,
SSL_CERT_FILE / REQUESTS_CA_BUNDLE = the gateway's certificate)

Prints one JSON line: {"ok": true, ...} on success, or {"ok": false, "error": "...",
"message": "...", "status": N} when the client raised: `error` is the whole chain a traceback
shows, `message` its last line (the exception the caller gets).

With BORDERGATE_HELPER=1 the optional helper (clients/python, `bordergate_client`) is
installed first, so a refusal raises `TransferRefused`.
"""

import hashlib
import io
import json
import os
import sys
import tempfile

GW = os.environ.get("GW", "")
TOKEN = os.environ.get("TOKEN", "")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def status_of(e) -> int | None:
    r = getattr(e, "response", None)
    for attr in ("status_code", "status"):
        v = getattr(r, attr, None) if r is not None else getattr(e, attr, None)
        if isinstance(v, int):
            return v
    return None


# --- Hugging Face -------------------------------------------------------------------------


def hf_download(repo, filename):
    from huggingface_hub import hf_hub_download

    p = hf_hub_download(repo, filename, cache_dir=tempfile.mkdtemp())
    return {"sha256": sha(open(p, "rb").read())}


def hf_snapshot(repo):
    from huggingface_hub import snapshot_download

    d = snapshot_download(repo, cache_dir=tempfile.mkdtemp())
    files = {}
    for root, _, names in os.walk(d):
        for n in names:
            p = os.path.join(root, n)
            files[os.path.relpath(p, d)] = sha(open(p, "rb").read())
    return {"files": files}


def hf_dataset(repo):
    import datasets

    ds = datasets.load_dataset(repo, split="train", cache_dir=tempfile.mkdtemp())
    return {"rows": ds.num_rows, "columns": ds.column_names, "first": ds[0]}


# --- plain HTTP ---------------------------------------------------------------------------


def requests_stream(path):
    import requests

    h = hashlib.sha256()
    with requests.get(GW + path, headers=AUTH, stream=True, timeout=30) as r:
        if r.status_code >= 400:
            r.content  # read the problem document before the response closes
        r.raise_for_status()
        for chunk in r.iter_content(chunk_size=7):
            h.update(chunk)
        return {"sha256": h.hexdigest(), "request_id": r.headers.get("x-request-id")}


def requests_error(e):
    r = getattr(e, "response", None)
    if r is not None:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text[:500]
        return {"detail": detail, "request_id": r.headers.get("x-request-id"), "status": r.status_code}
    return {}


def requests_get(path):
    import requests

    r = requests.get(GW + path, headers=AUTH, timeout=30)
    r.raise_for_status()
    return {"status": r.status_code}


def pandas_csv(path):
    import pandas as pd

    df = pd.read_csv(GW + path, storage_options=AUTH)
    return {"rows": len(df)}


def fsspec_read(path):
    import fsspec

    fs = fsspec.filesystem("https", headers=AUTH)
    with fs.open(GW + path, "rb") as f:
        return {"size": len(f.read())}


def dataset_csv(path):
    import datasets

    ds = datasets.load_dataset(
        "csv", data_files=GW + path, split="train", storage_options={"headers": AUTH}, cache_dir=tempfile.mkdtemp()
    )
    return {"rows": ds.num_rows}


def fsspec_range(path, offset, length):
    import fsspec

    fs = fsspec.filesystem("https", headers=AUTH)
    with fs.open(GW + path, "rb", block_size=16) as f:
        size = f.size
        f.seek(int(offset))
        data = f.read(int(length))
    return {"size": size, "data": data.decode("utf-8", "replace")}


def parquet_pandas(path):
    import pandas as pd

    df = pd.read_parquet(GW + path, storage_options=AUTH)
    return {"rows": len(df), "columns": list(df.columns), "sum": int(df["value"].sum())}


def parquet_pyarrow(path):
    import fsspec
    import pyarrow.parquet as pq

    fs = fsspec.filesystem("https", headers=AUTH)
    with fs.open(GW + path, "rb") as f:
        pf = pq.ParquetFile(f)
        t = pf.read(columns=["value"])
    return {"rows": t.num_rows, "sum": int(sum(t.column("value").to_pylist()))}


def make_parquet(out):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.table({"id": list(range(100)), "value": [i * 3 for i in range(100)], "name": [f"row{i}" for i in range(100)]})
    pq.write_table(t, out, row_group_size=25)
    return {"sum": sum(i * 3 for i in range(100))}


# --- S3 through the gateway (plain HTTP with the bordergate token) ------------------------


def s3_get_range(path, rng):
    import requests

    r = requests.get(GW + path, headers={**AUTH, "Range": rng}, timeout=30)
    r.raise_for_status()
    return {"status": r.status_code, "data": r.text, "content_range": r.headers.get("content-range")}


def s3_head(path):
    import requests

    r = requests.head(GW + path, headers=AUTH, timeout=30)
    r.raise_for_status()
    return {"length": int(r.headers["content-length"]), "etag": r.headers.get("etag")}


def s3_put(path, text):
    import requests

    r = requests.put(GW + path, headers=AUTH, data=text.encode(), timeout=30)
    r.raise_for_status()
    return {"status": r.status_code}


def s3_list(path):
    import xml.etree.ElementTree as ET

    import requests

    r = requests.get(GW + path, headers=AUTH, timeout=30)
    r.raise_for_status()
    ns = {"s": "http://s3.amazonaws.com/doc/2006-03-01/"}
    keys = [k.text for k in ET.fromstring(r.content).findall(".//s:Contents/s:Key", ns)]
    return {"keys": keys}


def s3_seed(endpoint, bucket, key_file, *objects):
    """Test setup straight against the object store: an IAM user whose keys only the
    gateway will hold, the bucket, and objects (`key=text`)."""
    import boto3

    kw = dict(endpoint_url=endpoint, region_name="us-east-1")
    iam = boto3.client("iam", aws_access_key_id="admin", aws_secret_access_key="admin", **kw)
    iam.create_user(UserName="bordergate")
    iam.put_user_policy(
        UserName="bordergate",
        PolicyName="s3",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
    )
    k = iam.create_access_key(UserName="bordergate")["AccessKey"]
    with open(key_file + ".id", "w") as f:
        f.write(k["AccessKeyId"])
    with open(key_file + ".secret", "w") as f:
        f.write(k["SecretAccessKey"])
    s3 = boto3.client("s3", aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"], **kw)
    s3.create_bucket(Bucket=bucket)
    for o in objects:
        key, text = o.split("=", 1)
        s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
    return {"bucket": bucket}


def s3_read_direct(endpoint, bucket, key_file, key):
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=open(key_file + ".id").read(),
        aws_secret_access_key=open(key_file + ".secret").read(),
    )
    try:
        return {"data": s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()}
    except s3.exceptions.NoSuchKey:
        return {"data": None}


CASES = {k: v for k, v in globals().items() if callable(v) and not k.startswith("_") and k not in ("sha", "status_of", "requests_error")}


def main():
    case, args = sys.argv[1], sys.argv[2:]
    if os.environ.get("BORDERGATE_HELPER") == "1":
        import bordergate_client

        bordergate_client.install()
    try:
        out = {"ok": True, **CASES[case](*args)}
    except Exception as e:  # the test checks what the user would see
        # What a traceback shows: the error and the errors it was raised from (hf_hub_download
        # wraps a refused HEAD in LocalEntryNotFoundError, raised from the HfHubHTTPError).
        chain, seen, c = [], set(), e
        while c is not None and id(c) not in seen:
            seen.add(id(c))
            chain.append(f"{type(c).__name__}: {c}")
            c = c.__cause__ or c.__context__
        out = {"ok": False, "error": "\n".join(chain), "message": chain[0], "status": status_of(e)}
        if "TransferRefused" in (c.__name__ for c in type(e).__mro__):
            out.update({"refused": True, "rule": e.rule, "remedy": e.remedy, "oserror": isinstance(e, OSError)})
        if type(e).__module__.startswith("requests"):
            out.update(requests_error(e))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
