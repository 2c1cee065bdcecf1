#!/usr/bin/env bash
# Builds the busybox image kybern's tests and demo run (no registry is reachable here).
#
# Usage: contrib/build-test-image.sh [TAG]     (default localhost/kybern-busybox:1.0)
#
# The image holds Debian's static busybox as /bin/busybox, a link per applet, and
# /www/index.html for `httpd -f -p 8080 -h /www`. The tag is not `latest` on purpose: a
# `latest` image gets imagePullPolicy Always, and nothing can be pulled here. Safe to run
# concurrently (flock) and again (an existing image is kept). Prints the tag on success.
set -euo pipefail

TAG=${1:-localhost/kybern-busybox:1.0}
BUSYBOX=${KYBERN_BUSYBOX:-/bin/busybox}

die() { echo "build-test-image: error: $*" >&2; exit 1; }

command -v podman >/dev/null || die "podman is not installed (run contrib/host-setup.sh)"
[[ -x $BUSYBOX ]] || die "$BUSYBOX not found (apt-get install busybox-static)"
# a dynamically linked busybox (Debian's 'busybox' package) would not run in an empty rootfs
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  die "$BUSYBOX is dynamically linked (apt-get install busybox-static)"
fi

exec 9>/tmp/kybern-test-image.lock
flock 9
if podman image exists "$TAG"; then
  echo "$TAG"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,www,tmp,root,proc,sys,dev}
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
cat >"$root/www/index.html" <<'HTML'
<!doctype html>
<html><head><title>kybern</title></head><body><h1>Hello from kybern</h1></body></html>
HTML
tar -C "$root" -cf "$work/rootfs.tar" .
podman import --quiet --change 'ENV=PATH=/bin' --change 'CMD=["/bin/sh"]' "$work/rootfs.tar" "$TAG" >/dev/null
echo "$TAG"
