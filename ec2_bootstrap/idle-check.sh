#!/usr/bin/env bash
# Runs the idle checker once (from cron, every minute) with the instance's configuration. The API
# token is read from the root-only env file and passed in the environment, never as an argument.
set -euo pipefail

set -a
# shellcheck source=/dev/null
. /etc/jupyter-on-demand/config.env
# shellcheck source=/dev/null
. /etc/jupyter-on-demand/secrets/jupyter.env
set +a

scheme=http
if [ -n "${JUPYTER_CERTFILE:-}" ]; then
  scheme=https
fi

/opt/jupyter-on-demand/venv/bin/python /opt/jupyter-on-demand/idle_check.py \
  --jupyter-url "${scheme}://127.0.0.1:${JUPYTER_PORT}" \
  --idle-minutes "${IDLE_MINUTES}" \
  --state-file /var/lib/jupyter-on-demand/idle-state.json \
  --activity-file "${JUPYTER_ACTIVITY_FILE}" \
  --flush-command "runuser -u jupyter -- /opt/jupyter-on-demand/venv/bin/python /opt/jupyter-on-demand/git_autosave.py flush --repo ${JUPYTER_ROOT_DIR} --timeout 60" \
  --insecure \
  2>&1 | systemd-cat -t jupyter-on-demand-idle
