#!/usr/bin/env bash
# A kybern cluster with a demo app on this machine, in one command (as root, Debian 12):
#
#   bash contrib/quickstart.sh
#
# 1. contrib/host-setup.sh: Debian packages, Podman settings, kybern in /opt/kybern/venv and
#    /usr/local/bin/kybern;
# 2. starts `kybern server` (a systemd service if systemd runs the machine, else in the
#    background with its log in /var/log/kybern.log) unless one already answers;
# 3. waits for https://127.0.0.1:6443/readyz;
# 4. applies contrib/manifests/demo.yaml (namespace demo: a ConfigMap, a Deployment of busybox
#    httpd, a Service) and shows what came up.
# Run it again at any time: every step checks first. KYBERN_PORT (6443) and KYBERN_DATA_DIR
# (/var/lib/kybern) choose another port or state directory.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG=/var/log/kybern.log
PIDFILE=/run/kybern.pid
PORT=${KYBERN_PORT:-6443}
DATA_DIR=${KYBERN_DATA_DIR:-/var/lib/kybern}
READY_URL=https://127.0.0.1:$PORT/readyz
READY_TIMEOUT=${KYBERN_READY_TIMEOUT:-120}
export PATH="/usr/local/bin:$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { echo "quickstart: $*"; }
die() { echo "quickstart: error: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (sudo bash $0)"

bash "$REPO/contrib/host-setup.sh"

ready() { [[ $(curl -ksS --max-time 5 "$READY_URL" 2>/dev/null) == ok ]]; }

uses_systemd() { [[ $(ps -p 1 -o comm= 2>/dev/null) == systemd ]]; }

# A server this script started from an older install (host-setup.sh just installed new code)
# is restarted on the new one; a server someone else runs is left alone.
INSTALLED=$(cat /opt/kybern/venv/.kybern-installed 2>/dev/null || true)
STARTED_FROM=/run/kybern.installed
if ready && [[ $(cat "$STARTED_FROM" 2>/dev/null) != "$INSTALLED" ]]; then
  if uses_systemd && systemctl is-active --quiet kybern.service; then
    systemctl restart kybern.service
    echo "$INSTALLED" >"$STARTED_FROM"
    say "restarted kybern.service on the newly installed kybern"
  elif [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    pid=$(cat "$PIDFILE")
    kill "$pid"
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    ! kill -0 "$pid" 2>/dev/null || die "the old kybern server (pid $pid) did not stop"
    rm -f "$PIDFILE"
    say "stopped the kybern server of the previous install (pid $pid)"
  fi
fi

if ready; then
  say "a kybern server already answers on $READY_URL"
elif uses_systemd; then
  install -m 0644 "$REPO/contrib/systemd/kybern.service" /etc/systemd/system/kybern.service
  echo "KYBERN_SERVER_ARGS=--https-listen-port $PORT --data-dir $DATA_DIR" >/etc/default/kybern
  systemctl daemon-reload
  systemctl enable --now kybern.service
  echo "$INSTALLED" >"$STARTED_FROM"
  say "started kybern.service (journalctl -u kybern -f for its log)"
  LOG="journalctl -u kybern"
else
  if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    say "kybern server (pid $(cat "$PIDFILE")) is starting"
  else
    nohup kybern server --https-listen-port "$PORT" --data-dir "$DATA_DIR" >>"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    echo "$INSTALLED" >"$STARTED_FROM"
    say "started kybern server (pid $!, log $LOG)"
  fi
fi

say "waiting up to ${READY_TIMEOUT}s for $READY_URL"
deadline=$((SECONDS + READY_TIMEOUT))
until ready; do
  if [[ -f $PIDFILE ]] && ! uses_systemd && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
    tail -n 5 "$LOG" >&2 || true
    die "kybern server exited; see $LOG"
  fi
  ((SECONDS < deadline)) || die "kybern server not ready after ${READY_TIMEOUT}s; see $LOG"
  sleep 1
done
say "server ready"
k() { kybern kubectl --data-dir "$DATA_DIR" "$@"; }
kk="kybern kubectl" # as the user types it
[[ $DATA_DIR == /var/lib/kybern ]] || kk+=" --data-dir $DATA_DIR"

k apply -f "$REPO/contrib/manifests/demo.yaml"

say "waiting up to 60s for the demo pods"
running=0
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  running=$(k get pods -n demo -l app=web \
    -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' 2>/dev/null | grep -c '^Running$' || true)
  ((running >= 2)) && break
  sleep 1
done
k get all -n demo || true
if ((running >= 2)); then
  cluster_ip=$(k get service web -n demo -o jsonpath='{.spec.clusterIP}' 2>/dev/null || true)
  say "the demo app runs; its page, through the Service: curl http://${cluster_ip:-CLUSTER-IP}/"
else
  say "the demo pods are not running after 60s (Podman may still be starting them);"
  say "see $kk describe pods -n demo, and the server log $LOG"
fi
cat <<EOF

Try next:
  $kk get all -n demo
  $kk get pods -n demo -o wide
  $kk describe deployment web -n demo
  $kk logs deployment/web -n demo
  $kk exec deployment/web -n demo -- ls /www
  $kk scale deployment web -n demo --replicas=3
  $kk delete namespace demo
Server log: $LOG
EOF
