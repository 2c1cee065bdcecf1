#!/usr/bin/env bash
# kybern's one test command (README "Run the tests"; CI runs exactly this through .ci/run).
#
#   bash contrib/run-tests.sh                 set up the host (--dev), ruff, then the fast tests
#   bash contrib/run-tests.sh -m slow         the slow tests instead (any pytest arguments work)
#   KYBERN_SKIP_SETUP=1 bash contrib/run-tests.sh -x tests/test_cli.py   rerun without setup
#
# Needs root on Debian 12 for the setup step (apt, Podman configuration, PostgreSQL).
# Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ${KYBERN_SKIP_SETUP:-} != 1 ]]; then
  bash contrib/host-setup.sh --dev
fi
if [[ -z ${KYBERN_TEST_PG_URL:-} && -f .ci/env ]]; then
  # shellcheck disable=SC1091
  set -a && . .ci/env && set +a
fi
export KYBERN_TEST_PG_URL

echo "run-tests: ruff check ."
.venv/bin/ruff check .
echo "run-tests: pytest"
exec .venv/bin/python -m pytest -m "not slow" -p no:cacheprovider -q "$@"
