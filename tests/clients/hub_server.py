"""A small Hugging Face hub-compatible upstream for the client tests.

Serves the repositories under a directory over the hub's HTTP protocol, the parts that
huggingface_hub and datasets call:

  GET  /api/{models,datasets}/{org}/{name}[/revision/{rev}]     repo info (sha, siblings)
  GET  /api/{models,datasets}/{org}/{name}/tree/{rev}[/{path}]  tree listing
  POST /api/{models,datasets}/{org}/{name}/paths-info/{rev}     paths info
  HEAD/GET /{org}/{name}/resolve/{rev}/{file}                   model files
  HEAD/GET /datasets/{org}/{name}/resolve/{rev}/{file}          dataset files

with ETag, X-Repo-Commit, Content-Length and Range. Files named *.safetensors or
*.parquet are "LFS" files: resolve answers 302 to a CDN origin (a second listener) with
X-Linked-Etag and X-Linked-Size, as the real hub does. A repo `{org}/old-{name}` is a
renamed repo: every request gets a relative 307 to the new name. A repo whose name
starts with `leaky-` redirects its LFS files to the "unvetted" origin instead.

Layout: ROOT/models/{org}/{name}/..., ROOT/datasets/{org}/{name}/...

Usage: python hub_server.py ROOT  -> prints "hub HUB_PORT CDN_PORT UNVETTED_PORT", then serves.
Every request is logged to stderr as "METHOD PATH".
"""

import hashlib
import json
import os
import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = ""
CDN = ""
UNVETTED = ""
LFS = (".safetensors", ".parquet")


def sha1(s: bytes) -> str:
    return hashlib.sha1(s).hexdigest()


def repo_dir(kind: str, repo: str) -> str:
    return os.path.join(ROOT, kind, *repo.split("/"))


def repo_files(kind: str, repo: str):
    base = repo_dir(kind, repo)
    out = []
    for d, _, files in os.walk(base):
        for f in files:
            out.append(os.path.relpath(os.path.join(d, f), base).replace(os.sep, "/"))
    return sorted(out)


def commit(kind: str, repo: str) -> str:
    return sha1(f"{kind}/{repo}".encode())


def file_info(kind: str, repo: str, path: str):
    data = open(os.path.join(repo_dir(kind, repo), path), "rb").read()
    info = {"type": "file", "path": path, "size": len(data), "oid": sha1(b"blob %d\0" % len(data) + data)}
    if path.endswith(LFS):
        sha = hashlib.sha256(data).hexdigest()
        info["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 130}
    return info, data


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TestHub/1.0"

    def log_message(self, fmt, *args):  # one line per request, on stderr
        sys.stderr.write(f"{self.server.role} {self.command} {self.path}\n")
        sys.stderr.flush()

    def send_json(self, obj, status=200):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def not_found(self, code="EntryNotFound", msg="not found"):
        body = json.dumps({"error": msg}).encode()
        self.send_response(404)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", msg)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_bytes(self, data: bytes, headers: dict):
        rng = self.headers.get("Range")
        status, start, end = 200, 0, len(data) - 1
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng or "")
        if m and data:
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else len(data) - 1
            else:
                start = max(0, len(data) - int(m.group(2)))
            end = min(end, len(data) - 1)
            if start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        part = data[start : end + 1]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(part)

    def do_HEAD(self):
        self.handle_any()

    def do_GET(self):
        self.handle_any()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        self.form = urllib.parse.parse_qs(self.rfile.read(n).decode()) if n else {}
        self.handle_any()

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        if self.server.role != "hub":
            return self.cdn(path)
        # Renamed repos: relative redirect to the new name.
        m = re.match(r"^(.*?/)?(?P<org>[\w.-]+)/old-(?P<name>[\w.-]+)(?P<rest>/.*)?$", path)
        if m:
            new = path.replace(f"{m['org']}/old-{m['name']}", f"{m['org']}/{m['name']}", 1)
            self.send_response(307)
            self.send_header("Location", urllib.parse.quote(new) + (f"?{url.query}" if url.query else ""))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        m = re.fullmatch(r"/api/(models|datasets)/([\w.-]+/[\w.-]+)(?:/revision/([^/]+))?", path)
        if m:
            return self.repo_info(m[1], m[2])
        m = re.fullmatch(r"/api/(models|datasets)/([\w.-]+/[\w.-]+)/tree/([^/]+)(?:/(.*))?", path)
        if m:
            return self.tree(m[1], m[2], m[4] or "", url.query)
        m = re.fullmatch(r"/api/(models|datasets)/([\w.-]+/[\w.-]+)/paths-info/([^/]+)", path)
        if m:
            return self.paths_info(m[1], m[2])
        m = re.fullmatch(r"/(datasets/)?([\w.-]+/[\w.-]+)/resolve/([^/]+)/(.+)", path)
        if m:
            return self.resolve("datasets" if m[1] else "models", m[2], m[4])
        self.not_found("RepoNotFound", f"no route for {path}")

    def repo_info(self, kind, repo):
        if not os.path.isdir(repo_dir(kind, repo)):
            return self.not_found("RepoNotFound", f"repository {repo} not found")
        sha = commit(kind, repo)
        self.send_json(
            {
                "_id": sha[:24],
                "id": repo,
                "modelId": repo,
                "author": repo.split("/")[0],
                "sha": sha,
                "private": False,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "lastModified": "2025-01-01T00:00:00.000Z",
                "createdAt": "2025-01-01T00:00:00.000Z",
                "siblings": [{"rfilename": f} for f in repo_files(kind, repo)],
                "cardData": {},
            }
        )

    def entries(self, kind, repo, files, prefix, recursive):
        out, dirs = [], set()
        for f in files:
            if prefix and not f.startswith(prefix + "/"):
                continue
            rest = f[len(prefix) + 1 :] if prefix else f
            if "/" in rest and not recursive:
                d = (prefix + "/" if prefix else "") + rest.split("/")[0]
                if d not in dirs:
                    dirs.add(d)
                    out.append({"type": "directory", "path": d, "oid": sha1(d.encode()), "size": 0})
                continue
            if recursive:
                parts = rest.split("/")[:-1]
                for i in range(len(parts)):
                    d = "/".join(([prefix] if prefix else []) + parts[: i + 1])
                    if d not in dirs:
                        dirs.add(d)
                        out.append({"type": "directory", "path": d, "oid": sha1(d.encode()), "size": 0})
            out.append(file_info(kind, repo, f)[0])
        return out

    def tree(self, kind, repo, prefix, query):
        if not os.path.isdir(repo_dir(kind, repo)):
            return self.not_found("RepoNotFound", f"repository {repo} not found")
        q = urllib.parse.parse_qs(query)
        recursive = q.get("recursive", ["false"])[0].lower() in ("true", "1")
        self.send_json(self.entries(kind, repo, repo_files(kind, repo), prefix.strip("/"), recursive))

    def paths_info(self, kind, repo):
        files = repo_files(kind, repo)
        out = []
        for p in getattr(self, "form", {}).get("paths", []):
            p = p.strip("/")
            if p in files:
                out.append(file_info(kind, repo, p)[0])
            elif any(f.startswith(p + "/") for f in files):
                out.append({"type": "directory", "path": p, "oid": sha1(p.encode()), "size": 0})
        self.send_json(out)

    def resolve(self, kind, repo, path):
        if path not in repo_files(kind, repo):
            return self.not_found("EntryNotFound", f"{path} does not exist in {repo}")
        info, data = file_info(kind, repo, path)
        sha = commit(kind, repo)
        if "lfs" in info:
            origin = UNVETTED if repo.split("/")[1].startswith("leaky-") else CDN
            self.send_response(302)
            self.send_header("Location", f"{origin}/lfs/{kind}/{repo}/{path}?sig=x")
            self.send_header("X-Repo-Commit", sha)
            self.send_header("X-Linked-Etag", f'"{info["lfs"]["oid"]}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", f'"{info["oid"]}"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_bytes(data, {"ETag": f'"{info["oid"]}"', "X-Repo-Commit": sha, "Content-Type": "application/octet-stream"})

    def cdn(self, path):
        m = re.fullmatch(r"/lfs/(models|datasets)/([\w.-]+/[\w.-]+)/(.+)", path)
        if not m or m[3] not in repo_files(m[1], m[2]):
            return self.not_found()
        info, data = file_info(m[1], m[2], m[3])
        self.send_bytes(data, {"ETag": f'"{info["lfs"]["oid"]}"', "Content-Type": "application/octet-stream"})


def serve(role):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    srv.role = role
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    global ROOT, CDN, UNVETTED
    ROOT = sys.argv[1]
    hub, cdn, unvetted = serve("hub"), serve("cdn"), serve("unvetted")
    CDN = f"http://127.0.0.1:{cdn.server_address[1]}"
    UNVETTED = f"http://127.0.0.1:{unvetted.server_address[1]}"
    print(f"hub {hub.server_address[1]} {cdn.server_address[1]} {unvetted.server_address[1]}", flush=True)
    try:
        sys.stdin.read()  # serve until the test closes our stdin (or dies)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
