"""pandas and pyarrow read transformed data through the gateway (tests/minimise.rs).

Usage: minimise.py csv|parquet URL; env TOKEN, SSL_CERT_FILE. Prints one JSON object:
the columns and every value of each column as text.
"""
import io
import json
import os
import sys
import urllib.request

import pandas as pd
import pyarrow.parquet as pq

kind, url = sys.argv[1], sys.argv[2]
headers = {"Authorization": "Bearer " + os.environ["TOKEN"]}
if kind == "csv":
    # pandas fetches the URL itself (urllib, the headers as storage options).
    df = pd.read_csv(url, storage_options=headers, dtype=str, keep_default_na=False)
else:
    # pyarrow reads the whole transformed file: the gateway refuses Range on it.
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
        table = pq.read_table(io.BytesIO(r.read()))
    df = table.to_pandas().astype(str)
print(json.dumps({"columns": list(df.columns), "values": {c: list(df[c]) for c in df.columns}}))
