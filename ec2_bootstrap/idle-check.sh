#!/usr/bin/env bash
# Runs the idle checker once (from cron, every 30 s) with the instance's configuration. The API
# token is read from the root-only env file and passed in the environment, never as an argument.
# The env files are read line by line, not sourced: the argon2 hash is full of `$`.
set -euo pipefail
# cron's PATH lacks the sbin directories, where runuser and shutdown live.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

value() { # value KEY FILE: the raw value of KEY=... in an env file
  sed -n "s/^$1=//p" "$2" | head -n 1
}

config=/etc/jupyter-on-demand/config.env
secrets=/etc/jupyter-on-demand/secrets/jupyter.env
port=$(value JUPYTER_PORT "$config")
idle_minutes=$(value IDLE_MINUTES "$config")
repo=$(value JUPYTER_ROOT_DIR "$secrets")
JUPYTER_TOKEN=$(value JUPYTER_TOKEN "$secrets")
export JUPYTER_TOKEN

scheme=http
if [ -n "$(value JUPYTER_CERTFILE "$secrets")" ]; then
  scheme=https
fi

/opt/jupyter-on-demand/venv/bin/python /opt/jupyter-on-demand/idle_check.py \
  --jupyter-url "${scheme}://127.0.0.1:${port}" \
  --idle-minutes "${idle_minutes}" \
  --state-file /var/lib/jupyter-on-demand/idle-state.json \
  --activity-file "$(value JUPYTER_ACTIVITY_FILE "$secrets")" \
  --flush-command "runuser -u jupyter -- env HOME=/home/jupyter /opt/jupyter-on-demand/venv/bin/python /opt/jupyter-on-demand/git_autosave.py flush --repo ${repo} --timeout 60" \
  --insecure \
  2>&1 | systemd-cat -t jupyter-on-demand-idle
