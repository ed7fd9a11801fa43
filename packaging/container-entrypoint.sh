#!/bin/sh
# The container's command: fanout on /etc/fanout/icecast.xml when one is there (mounted),
# else on the built-in config (port 8000, passwords printed). Arguments go to fanout.
# exec, so that fanout itself gets the SIGTERM of `docker stop` and drains.
set -e
config="${FANOUT_CONFIG:-/etc/fanout/icecast.xml}"
if [ -e "$config" ]; then
    exec fanout -c "$config" "$@"
fi
exec fanout "$@"
