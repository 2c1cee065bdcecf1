#!/usr/bin/env bash
# Checks that Podman can run a container here, and says in one line what to fix if not.
#
# Usage: contrib/check-podman.sh [IMAGE]   (default localhost/kybern-busybox:1.0, built if missing)
#
# Exit 0 and "podman runs containers (image IMAGE)" on stdout, or exit 1 and one line
# "check-podman: error: ..." on stderr naming the fix. contrib/host-setup.sh runs it after
# writing the Podman settings this host class needs (README "Podman host requirements").
set -euo pipefail

IMAGE=${1:-localhost/kybern-busybox:1.0}
CONF=/etc/containers/containers.conf.d/50-kybern.conf
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "check-podman: error: $*" >&2; exit 1; }

diagnose() {
  case $1 in
    *"hybrid mode"* | *crun*)
      echo "crun cannot run containers on this host: apt-get install runc and set runtime = \"runc\" under [engine] in $CONF" ;;
    *rlimit* | *RLIMIT*)
      echo "Podman's default ulimits exceed the hard limits: set default_ulimits = [\"nofile=N:N\", \"nproc=N:N\"] (N <= ulimit -Hn/-Hu, at most 20000) under [containers] in $CONF" ;;
    *runc*"not found"* | *"executable file not found"*)
      echo "runc is missing: apt-get install runc" ;;
    *)
      echo "podman cannot run a container: $(printf '%s' "$1" | grep -m1 -v '^$')" ;;
  esac
}

command -v podman >/dev/null || die "podman is not installed: apt-get install podman runc"
if ! built=$(bash "$HERE/build-test-image.sh" "$IMAGE" 2>&1); then
  case $built in
    *"build-test-image: error: "*) die "${built##*build-test-image: error: }" ;;
    *) die "$(diagnose "$built")" ;; # podman itself failed while importing the image
  esac
fi
if out=$(podman run --rm "$IMAGE" true 2>&1 </dev/null); then
  echo "podman runs containers (image $IMAGE)"
else
  die "$(diagnose "$out")"
fi
