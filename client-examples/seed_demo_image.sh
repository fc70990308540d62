#!/bin/bash
# Seeds a tiny demo image into a registry.
#
#   seed_demo_image.sh [--layout-dir DIR] HOST:PORT [REPO[:TAG]]
#   seed_demo_image.sh --layout-dir DIR --no-push [TAG]
#
# Builds a minimal OCI image layout by hand (one gzip layer holding hello.txt,
# a config carrying labels, a manifest, index.json, oci-layout) and copies it
# with skopeo to docker://HOST:PORT/REPO:TAG (default demo/hello:latest),
# keeping its digests. The registry may be plain HTTP (TLS is not verified).
#
# Prints the pushed reference on stdout, so scripts can capture it:
#   ref=$(client-examples/seed_demo_image.sh 127.0.0.1:5000)
#
# --layout-dir DIR  builds the layout in DIR (created; must be empty or absent)
#                   and keeps it, e.g. for `regd_client.py push-image`.
# --no-push         only build the layout (needs --layout-dir); prints the
#                   manifest digest.
# $SEED_DEST_CREDS  user:password for the registry, if it needs one.
#
# The layout is byte-for-byte reproducible, so the manifest digest is the same
# on every run. Needs: bash, tar, gzip, sha256sum, skopeo.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

layout_dir=""
push=1
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --layout-dir) layout_dir=${2:?--layout-dir needs a directory}; shift 2 ;;
    --layout-dir=*) layout_dir=${1#*=}; shift ;;
    --no-push) push=0; shift ;;
    -h|--help) usage ;;
    *) echo "seed_demo_image.sh: unknown option $1" >&2; usage ;;
  esac
done
if [[ $push == 1 ]]; then
  [[ $# -ge 1 && $# -le 2 ]] || usage
  registry=$1
  repo_tag=${2:-demo/hello:latest}
else
  [[ -n $layout_dir && $# -le 1 ]] || usage
  registry=""
  repo_tag=demo/hello:${1:-latest}
fi
# A tag is a ':' after the last '/'.
if [[ ${repo_tag##*/} != *:* ]]; then
  repo_tag="$repo_tag:latest"
fi
tag=${repo_tag##*:}

work=$(mktemp -d "${TMPDIR:-/tmp}/regd-seed.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [[ -z $layout_dir ]]; then
  layout_dir="$work/layout"
fi
mkdir -p "$layout_dir/blobs/sha256"
if [[ -n $(ls -A "$layout_dir/blobs/sha256") ]]; then
  echo "seed_demo_image.sh: $layout_dir is not empty" >&2
  exit 1
fi

# Writes stdin to a blob; prints "<hex digest> <size>".
put_blob() {
  local tmp="$work/blob.tmp" hex size
  cat >"$tmp"
  hex=$(sha256sum "$tmp" | cut -d' ' -f1)
  size=$(stat -c %s "$tmp")
  mv "$tmp" "$layout_dir/blobs/sha256/$hex"
  echo "$hex $size"
}

# The layer: one file, with fixed owner, mode and mtime so it is reproducible.
mkdir -p "$work/rootfs"
printf 'hello from regd\n' >"$work/rootfs/hello.txt"
chmod 0644 "$work/rootfs/hello.txt"
tar --format=ustar --sort=name --owner=0 --group=0 --numeric-owner \
    --mtime=@0 -C "$work/rootfs" -cf "$work/layer.tar" hello.txt
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
read -r layer_hex layer_size < <(gzip -9 -n -c "$work/layer.tar" | put_blob)

read -r config_hex config_size < <(printf '%s' \
'{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z",'\
'"config":{"Cmd":["/bin/cat","/hello.txt"],'\
'"Labels":{"org.opencontainers.image.title":"regd demo","io.regd.demo":"hello"}},'\
'"rootfs":{"type":"layers","diff_ids":["sha256:'"$diff_id"'"]},'\
'"history":[{"created":"1970-01-01T00:00:00Z","created_by":"seed_demo_image.sh"}]}' \
  | put_blob)

read -r manifest_hex manifest_size < <(printf '%s' \
'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"config":{"mediaType":"application/vnd.oci.image.config.v1+json",'\
'"digest":"sha256:'"$config_hex"'","size":'"$config_size"'},'\
'"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip",'\
'"digest":"sha256:'"$layer_hex"'","size":'"$layer_size"'}]}' \
  | put_blob)

printf '%s' \
'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",'\
'"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",'\
'"digest":"sha256:'"$manifest_hex"'","size":'"$manifest_size"','\
'"annotations":{"org.opencontainers.image.ref.name":"'"$tag"'"}}]}' \
  >"$layout_dir/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout_dir/oci-layout"
if [[ $push == 0 ]]; then
  echo "sha256:$manifest_hex"
  exit 0
fi

skopeo_args=(--dest-tls-verify=false --preserve-digests)
if [[ -n ${SEED_DEST_CREDS:-} ]]; then
  skopeo_args+=(--dest-creds "$SEED_DEST_CREDS")
fi
policy=()
if [[ ! -f /etc/containers/policy.json && ! -f ${HOME:-/nonexistent}/.config/containers/policy.json ]]; then
  policy=(--insecure-policy)  # no signature policy installed; this is a local demo
fi
dest="$registry/$repo_tag"
skopeo "${policy[@]}" copy -q "${skopeo_args[@]}" \
  "oci:$layout_dir:$tag" "docker://$dest" >&2
echo "seeded $dest (manifest sha256:$manifest_hex)" >&2
echo "$dest"
