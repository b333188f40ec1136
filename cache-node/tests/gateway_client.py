#!/usr/bin/env python3
"""boto3 against `cachectl gateway`: a real S3 client nobody here wrote. Run by tests/gateway.rs.

Usage:
  gateway_client.py check SPEC.json        every check below; exit 1 on the first failure
  gateway_client.py get SPEC.json KEY OUT  one whole-object GET, body written to OUT

SPEC.json (written by the Rust test): endpoint, bucket, access_key, secret_key, other (another
volume's access_key/secret_key), objects [{key, file}] (file = the bytes the origin holds),
ranges [{key, range, start, end, out}] (end exclusive; the body is written to out), and
prefixes: the JuiceFS file system name ("myjfs"). Prints one "ok ..." line per check and, last,
a JSON line {"checks": N, "sha256": {name: hex}}.
"""

import hashlib
import json
import sys
import urllib.request

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError
except ImportError as e:
    print(f"boto3 is not installed ({e}): run `python3 -m pip install boto3`", file=sys.stderr)
    sys.exit(3)

CHECKS = 0
SHA = {}


def ok(what):
    global CHECKS
    CHECKS += 1
    print(f"ok {what}", flush=True)


def fail(what):
    print(f"FAIL {what}", file=sys.stderr, flush=True)
    sys.exit(1)


def expect(cond, what):
    if not cond:
        fail(what)
    ok(what)


def client(spec, access_key, secret_key):
    config = Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1})
    return boto3.client(
        "s3",
        endpoint_url=spec["endpoint"],
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=config,
    )


def expect_error(call, codes, what):
    try:
        call()
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code")
        expect(code in codes, f"{what}: error {code} (want one of {codes})")
        return e
    fail(f"{what}: succeeded, want an error in {codes}")


def sha(data):
    return hashlib.sha256(data).hexdigest()


def listed_keys(s3, bucket, **kwargs):
    keys, pages = [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kwargs):
        pages += 1
        # An ETag is listed only when the origin lists one (the test origin, s3s-fs, does not).
        keys += [(o["Key"], o["Size"], o.get("ETag")) for o in page.get("Contents", [])]
    return keys, pages


def check(spec):
    s3 = client(spec, spec["access_key"], spec["secret_key"])
    bucket, fs = spec["bucket"], spec["fs"]
    objects = {o["key"]: open(o["file"], "rb").read() for o in spec["objects"]}
    etags = {k: f'"{hashlib.md5(v).hexdigest()}"' for k, v in objects.items()}
    chunks = sorted(k for k in objects if k.startswith(f"{fs}/chunks/"))

    # Listings: prefix, string prefix inside a "directory", pages of 2, delimiter, v1.
    got, _ = listed_keys(s3, bucket, Prefix=f"{fs}/chunks/")
    want = [(k, len(objects[k])) for k in chunks]
    expect([(k, n) for k, n, _ in got] == want, f"list_objects_v2 prefix: {len(got)} keys")
    expect(all(e in (None, etags[k]) for k, _, e in got), "listed ETags, where given, are the objects'")
    some = chunks[0].rsplit("_", 2)[0] + "_"
    got, _ = listed_keys(s3, bucket, Prefix=some)
    expect([k for k, _, _ in got] == [k for k in chunks if k.startswith(some)], f"list prefix {some!r}")
    got, pages = listed_keys(s3, bucket, PaginationConfig={"PageSize": 2})
    expect([k for k, _, _ in got] == sorted(objects) and pages == (len(objects) + 1) // 2, f"paged list: {pages}")
    page = s3.list_objects_v2(Bucket=bucket, Prefix=f"{fs}/", Delimiter="/")
    dirs = [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    files = [o["Key"] for o in page.get("Contents", [])]
    top = sorted(k for k in objects if "/" not in k[len(fs) + 1 :])
    expect(dirs == [f"{fs}/chunks/"] and files == top, f"delimiter list: {dirs} {files}")
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    expect([p["Prefix"] for p in page.get("CommonPrefixes", [])] == [f"{fs}/"], "delimiter list at the root")
    page = s3.list_objects(Bucket=bucket, Prefix=f"{fs}/chunks/")
    expect([o["Key"] for o in page.get("Contents", [])] == chunks, "list_objects (v1)")

    # Whole objects and HEAD.
    for key, data in objects.items():
        r = s3.get_object(Bucket=bucket, Key=key)
        body = r["Body"].read()
        SHA[key] = sha(body)
        expect(body == data, f"get {key}: {len(body)} bytes, sha256 {SHA[key]} (want {sha(data)})")
        expect(r["ContentLength"] == len(data) and r["ETag"] == etags[key], f"get {key}: length and ETag")
        h = s3.head_object(Bucket=bucket, Key=key)
        expect(h["ContentLength"] == len(data) and h["ETag"] == etags[key], f"head {key}")
        expect(h.get("LastModified") is not None, f"head {key}: LastModified")

    # Ranges: bodies checked here and written out for the Rust side to compare too.
    for rg in spec["ranges"]:
        data, (start, end) = objects[rg["key"]], (rg["start"], rg["end"])
        r = s3.get_object(Bucket=bucket, Key=rg["key"], Range=rg["range"])
        body = r["Body"].read()
        open(rg["out"], "wb").write(body)
        SHA[f'{rg["key"]} {rg["range"]}'] = sha(body)
        status = r["ResponseMetadata"]["HTTPStatusCode"]
        want_range = f"bytes {start}-{end - 1}/{len(data)}"
        expect(body == data[start:end], f"get {rg['key']} {rg['range']}: {len(body)} bytes")
        expect(status == 206 and r["ContentRange"] == want_range, f"{rg['range']}: {status} {r['ContentRange']}")

    # Errors.
    key = chunks[0]
    expect_error(lambda: s3.get_object(Bucket=bucket, Key=f"{fs}/chunks/9/9/no_such_key"), ["NoSuchKey"], "get missing")
    expect_error(lambda: s3.head_object(Bucket=bucket, Key=f"{fs}/no_such_key"), ["404", "NoSuchKey"], "head missing")
    past = f"bytes={len(objects[key])}-"
    expect_error(lambda: s3.get_object(Bucket=bucket, Key=key, Range=past), ["InvalidRange"], "range past end")
    expect_error(lambda: s3.list_objects_v2(Bucket="no-such-volume"), ["NoSuchBucket"], "unknown bucket")

    # Writes are refused.
    denied = ["AccessDenied"]
    e = expect_error(lambda: s3.put_object(Bucket=bucket, Key=f"{fs}/new", Body=b"x"), denied, "put_object")
    expect("read-only" in e.response["Error"].get("Message", ""), "put_object: message says read-only")
    expect_error(lambda: s3.delete_object(Bucket=bucket, Key=key), denied, "delete_object")
    expect_error(
        lambda: s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}]}), denied, "delete_objects"
    )
    expect_error(
        lambda: s3.copy_object(Bucket=bucket, Key=f"{fs}/copy", CopySource={"Bucket": bucket, "Key": key}),
        denied,
        "copy_object",
    )
    expect_error(lambda: s3.create_multipart_upload(Bucket=bucket, Key=f"{fs}/mp"), denied, "multipart upload")
    expect_error(lambda: s3.create_bucket(Bucket="newbucket"), denied, "create_bucket")
    expect_error(lambda: s3.delete_bucket(Bucket=bucket), denied, "delete_bucket")
    expect(all(s3.get_object(Bucket=bucket, Key=k)["Body"].read() == v for k, v in objects.items()), "data unchanged")

    # Credentials: wrong secret, unknown access key, another volume's valid credentials.
    bad = client(spec, spec["access_key"], spec["secret_key"] + "-wrong")
    expect_error(lambda: bad.list_objects_v2(Bucket=bucket), ["SignatureDoesNotMatch"], "wrong secret (list)")
    expect_error(lambda: bad.get_object(Bucket=bucket, Key=key), ["SignatureDoesNotMatch"], "wrong secret (get)")
    nobody = client(spec, "nobody", spec["secret_key"])
    expect_error(lambda: nobody.get_object(Bucket=bucket, Key=key), ["InvalidAccessKeyId"], "unknown access key")
    other = client(spec, spec["other"]["access_key"], spec["other"]["secret_key"])
    expect_error(lambda: other.get_object(Bucket=bucket, Key=key), denied, "another volume's credentials (get)")
    expect_error(lambda: other.list_objects_v2(Bucket=bucket), denied, "another volume's credentials (list)")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60)
    with urllib.request.urlopen(url) as r:
        expect(r.read() == objects[key], "presigned GET (query-string SigV4) with plain urllib")
    buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    expect(buckets == [bucket], f"list_buckets: {buckets}")


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("check", "get"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    spec = json.load(open(sys.argv[2]))
    if sys.argv[1] == "check":
        check(spec)
    else:
        key, out = sys.argv[3], sys.argv[4]
        body = client(spec, spec["access_key"], spec["secret_key"]).get_object(Bucket=spec["bucket"], Key=key)["Body"]
        data = body.read()
        open(out, "wb").write(data)
        SHA[key] = sha(data)
        ok(f"get {key}: {len(data)} bytes")
    print(json.dumps({"checks": CHECKS, "sha256": SHA}))


if __name__ == "__main__":
    main()
