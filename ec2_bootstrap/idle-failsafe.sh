#!/usr/bin/env bash
# The idle stop's fail-safe, shipped in user_data and run after every idle check (ExecStopPost=
# of jupyter-on-demand-idle.service). When the checker can't run or fails (not installed yet, a
# failed install, a crash, a hang its unit's timeout killed, a python3 it can't run on), it stops
# the machine once no check has completed for the idle time: since the last completed check, or
# since boot. Boot steps still running in the first 30 min after boot hold it off (a first
# install). IDLE_MINUTES as boot.py merges it: the site's local.env first (root's, optional), then
# config.env, which boot.py writes from the settings in SSM; 40 until either has it (the first
# boot, before the settings arrive). bash, coreutils and procps only.
set -euo pipefail
[ "${SERVICE_RESULT:-success}" = success ] && exit 0
# The paths are layout.py's: jupyter-on-demand-idle.service, rendered from it, sets the JOD_*;
# the defaults are layout.Paths' (tests/ec2_bootstrap/test_install.py), so that a unit without
# them (an older version's, for a moment at an upgrade) still ends in a stop.
config=${JOD_CONFIG:-/etc/jupyter-on-demand/config.env}
heartbeat=${JOD_RUN_DIR:-/run/jupyter-on-demand}/idle-ok
local_env=${JOD_LOCAL_ENV:-/etc/jupyter-on-demand/local.env}
minutes=$(sed -n 's/^IDLE_MINUTES=\([0-9][0-9.]*\).*/\1/p' "$local_env" "$config" 2>/dev/null | head -n 1 || true)
limit=$(awk -v minutes="${minutes:-40}" 'BEGIN { printf "%d", minutes * 60 }') # 0.5 is 30 s
uptime=$(cut -d . -f 1 /proc/uptime)
quiet=$uptime
if [ -f "$heartbeat" ]; then
  quiet=$(($(date +%s) - $(stat -c %Y "$heartbeat")))
fi
if [ "$uptime" -lt "${JOD_BOOT_GRACE_SECONDS:-1800}" ] &&
  pgrep -u 0 -f 'boot\.py (install|sync|wake|secrets|repo|ready)|cloud-init (init|modules)' >/dev/null; then
  echo "the idle checker failed (${SERVICE_RESULT}); boot steps are running, the fail-safe waits"
elif [ "$quiet" -lt "$limit" ]; then
  echo "the idle checker failed (${SERVICE_RESULT}); the fail-safe stops the machine in $((limit - quiet)) s unless a check completes"
else
  echo "no idle check has completed for ${quiet} s: the fail-safe stops the machine"
  shutdown -h now
fi
