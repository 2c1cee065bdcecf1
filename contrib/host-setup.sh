#!/usr/bin/env bash
# Prepares a Debian 12 machine for kybern, as root. Safe to run again: each step checks first.
#
#   contrib/host-setup.sh          install kybern into /opt/kybern/venv, /usr/local/bin/kybern
#   contrib/host-setup.sh --dev    a development checkout: ./.venv (editable, with test tools),
#                                  a running PostgreSQL with the test role and database
#
# Steps: Debian packages, Podman configuration for this host class (runc, ulimits), a check
# that Podman really runs a container (with the busybox test image), the Python venv and, for
# --dev, PostgreSQL. Every failed check ends in one line saying what to fix; the script goes on
# with the other steps where it can and exits non-zero at the end.
set -euo pipefail

usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }

DEV=0
for arg in "$@"; do
  case $arg in
    --dev) DEV=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "host-setup: error: unknown argument $arg (see --help)" >&2; exit 2 ;;
  esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export DEBIAN_FRONTEND=noninteractive
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
export HOME=${HOME:-/root}
TEST_IMAGE=${KYBERN_TEST_IMAGE:-localhost/kybern-busybox:1.0}
PODMAN_CONF=/etc/containers/containers.conf.d/50-kybern.conf
ERRORS=()

say() { echo "host-setup: $*"; }
problem() { echo "host-setup: error: $*" >&2; ERRORS+=("$*"); }
# a mirror hiccup should not fail a CI run
retry() {
  local attempt
  for attempt in 1 2 3; do
    "$@" && return 0
    ((attempt < 3)) && say "retrying in 10s: $*" && sleep 10
  done
  return 1
}

[[ $(id -u) == 0 ]] || { echo "host-setup: error: run as root (sudo bash $0 $*)" >&2; exit 1; }
if [[ -r /etc/os-release ]]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  [[ ${ID:-} == debian && ${VERSION_ID:-} == 12 ]] ||
    say "warning: made for Debian 12, this is ${PRETTY_NAME:-unknown}; carrying on"
fi

# --------------------------------------------------------------------------- packages
PACKAGES=(
  python3 python3-venv python3-dev gcc
  podman runc busybox-static nftables iproute2
  # what Podman needs for pods and bridge networks (Debian only recommends these)
  netavark aardvark-dns catatonit iptables uidmap slirp4netns fuse-overlayfs
  postgresql docker-registry
  ca-certificates curl git util-linux
)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  # Package scripts must not start services (docker-registry would take port 5000, and there
  # may be no init system): kybern and its tests start what they need themselves.
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    made_policy=1
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  retry apt-get update -q
  retry apt-get install -y -q -o Dpkg::Options::=--force-confold "${missing[@]}" </dev/null
  if ((made_policy)); then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
else
  say "Debian packages already installed"
fi

# kubectl is not a Debian 12 package: use the one on PATH, or apt's if a repository offers it
if ! command -v kubectl >/dev/null; then
  if apt-cache policy kubectl 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get install -y -q kubectl </dev/null
  fi
fi
if ! kubectl version --client >/dev/null 2>&1; then
  problem "kubectl not found: install kubectl 1.32 (the Kubernetes project's apt repository, or its release binary into /usr/local/bin)"
fi

# --------------------------------------------------------------------------- podman
# crun fails on this host's hybrid cgroups and Podman's default ulimits exceed the hard
# limits (see README "Podman host requirements"); values are the hard limits, capped at 20000.
cap() {
  local hard=$1
  if [[ $hard == unlimited ]] || ((hard > 20000)); then echo 20000; else echo "$hard"; fi
}
nofile=$(cap "$(ulimit -Hn)")
nproc=$(cap "$(ulimit -Hu)")
mkdir -p "$(dirname "$PODMAN_CONF")"
want=$(
  cat <<EOF
# Written by kybern's contrib/host-setup.sh: crun cannot start containers on hybrid cgroups
# here, and the default ulimits exceed this machine's hard limits.
[engine]
runtime = "runc"

[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
EOF
)
if [[ ! -f $PODMAN_CONF || $(cat "$PODMAN_CONF") != "$want" ]]; then
  printf '%s\n' "$want" >"$PODMAN_CONF"
  say "wrote $PODMAN_CONF (runtime runc, nofile $nofile, nproc $nproc)"
fi

if out=$(bash "$REPO/contrib/check-podman.sh" "$TEST_IMAGE" 2>&1); then
  say "$out"
else
  problem "${out#check-podman: error: }"
fi

# --------------------------------------------------------------------------- python
PYTHON=${KYBERN_PYTHON:-/usr/bin/python3}
if ((DEV)); then VENV=$REPO/.venv; else VENV=/opt/kybern/venv; fi
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  say "creating $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
# Reinstalling costs a minute of downloads; redo it only when the project's metadata changed,
# or (a copy, not an editable install) its code: after a pull, a second run installs the new code.
stamp=$VENV/.kybern-installed
want_stamp=$(cat "$REPO/pyproject.toml" "$REPO/setup.py" | sha256sum | cut -d' ' -f1)-$DEV
if ((!DEV)); then
  code=$(cd "$REPO" && find core plugins runtimes migrations -type f ! -name '*.pyc' -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
  want_stamp+=-$code
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$want_stamp" ]] || ! "$VENV/bin/python" -c 'import kybern' 2>/dev/null; then
  say "installing kybern into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -U pip 'setuptools>=68' wheel </dev/null
  if ((DEV)); then
    (cd "$REPO" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' </dev/null)
  else
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$REPO" </dev/null
  fi
  echo "$want_stamp" >"$stamp"
else
  say "kybern already installed in $VENV"
fi
if ((!DEV)); then
  ln -sfn "$VENV/bin/kybern" /usr/local/bin/kybern
  say "kybern is /usr/local/bin/kybern"
fi

# --------------------------------------------------------------------------- postgresql (--dev)
if ((DEV)); then
  # the Debian package's cluster ("main", any version), else the first one listed
  clusters=$(pg_lsclusters -h 2>/dev/null || true)
  cluster=$(awk '$2 == "main"' <<<"$clusters" | head -n 1)
  read -r pg_ver pg_name pg_port pg_status _ <<<"${cluster:-$(head -n 1 <<<"$clusters")}" || true
  if [[ -z ${pg_ver:-} ]]; then
    problem "no PostgreSQL cluster exists: pg_createcluster --start 15 main"
  else
    if [[ $pg_status != online* ]]; then
      say "starting PostgreSQL $pg_ver/$pg_name"
      pg_ctlcluster "$pg_ver" "$pg_name" start || problem "PostgreSQL $pg_ver/$pg_name did not start: see /var/log/postgresql/postgresql-$pg_ver-$pg_name.log"
    fi
    psql_admin() { (cd / && runuser -u postgres -- psql -p "$pg_port" -v ON_ERROR_STOP=1 -qAt "$@"); }
    if psql_admin -c 'SELECT 1' >/dev/null 2>&1; then
      if [[ $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'kybern'") != 1 ]]; then
        psql_admin -c "CREATE ROLE kybern LOGIN CREATEDB PASSWORD 'kybern'"
      else
        psql_admin -c "ALTER ROLE kybern LOGIN CREATEDB PASSWORD 'kybern'"
      fi
      # tests drop their databases WITH (FORCE), which must end the sessions still in them
      psql_admin -c "GRANT pg_signal_backend TO kybern"
      if [[ $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'kybern_test'") != 1 ]]; then
        psql_admin -c 'CREATE DATABASE kybern_test OWNER kybern'
      fi
      url="postgresql+psycopg://kybern:kybern@127.0.0.1:${pg_port}/kybern_test"
      echo "KYBERN_TEST_PG_URL=$url" >"$REPO/.ci/env"
      say "PostgreSQL ready: KYBERN_TEST_PG_URL=$url (also in .ci/env)"
    else
      problem "cannot connect to PostgreSQL $pg_ver/$pg_name on port $pg_port as postgres"
    fi
  fi
fi

if ((${#ERRORS[@]})); then
  echo "host-setup: ${#ERRORS[@]} problem(s) left, see the error lines above" >&2
  exit 1
fi
say "done"
