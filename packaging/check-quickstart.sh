#!/usr/bin/env bash
# Check that the README's Quick start works as written on a fresh Debian 12.
#
#   bash packaging/check-quickstart.sh          # as root; a few minutes; needs the network
#   bash packaging/check-quickstart.sh --print  # only print the commands it would run
#
# The commands are read from README.md, between the quickstart:install and quickstart:run
# markers, and run verbatim, so README and check cannot drift apart. The script:
#   1. makes a fresh Debian 12 (debootstrap --variant=minbase) under /tmp;
#   2. copies this checkout there as /root/fanout (the committed files plus uncommitted
#      changes to them, as a fresh clone with those changes would have);
#   3. runs the install block there in one shell (bash -e: stop at the first failure), as
#      root, with an empty environment;
#   4. runs the run block in a shell with the environment the install block left (the venv
#      it activated), in private network, PID and mount namespaces: port 8000 is free
#      whatever this machine runs, and nothing outlives the check;
#   5. waits for http://127.0.0.1:8000/health to answer 200, prints it, stops the server
#      with SIGTERM and expects exit status 0;
#   6. deletes the Debian root.
# Not run in CI: it takes minutes and downloads Debian and PyPI packages.
#
# Environment:
#   MIRROR                Debian mirror (default http://deb.debian.org/debian)
#   QUICKSTART_CA_BUNDLE  a CA bundle for pip in the fresh root, for networks whose proxy
#                         intercepts TLS (given to pip as PIP_CERT; the commands stay as written)
#   KEEP_ROOT=1           keep the Debian root (its path is printed) instead of deleting it
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
README="$REPO/README.md"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# Seconds the server may take from start to answering /health.
HEALTH_TIMEOUT=60
# Seconds it may take to stop after SIGTERM (the supervisor's STOP_GRACE is 5).
STOP_TIMEOUT=15

# The lines of the ```sh block between <!-- quickstart:NAME --> and <!-- /quickstart:NAME -->.
block() {
    awk -v begin="<!-- quickstart:$1 -->" -v end="<!-- /quickstart:$1 -->" '
        $0 == begin { inside = 1; next }
        $0 == end { inside = 0; next }
        inside && !/^```/ { print }
    ' "$README"
}

INSTALL="$(block install)"
RUN="$(block run)"
if [ -z "$INSTALL" ] || [ -z "$RUN" ]; then
    echo "check-quickstart: README.md lacks the quickstart:install or quickstart:run block" >&2
    exit 1
fi
if [ "${1:-}" = "--print" ]; then
    printf '# install\n%s\n# run\n%s\n' "$INSTALL" "$RUN"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "check-quickstart: run as root (debootstrap, chroot, unshare)" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
for tool in curl ip unshare; do
    command -v $tool >/dev/null || { echo "check-quickstart: needs $tool" >&2; exit 1; }
done

ROOT="$(mktemp -d /tmp/fanout-quickstart.XXXXXX)"
cleanup() {
    # Every mount was made in a private mount namespace that is gone by now: check anyway
    # before deleting, so that a leftover bind mount of /dev can never be deleted through.
    if findmnt -rn -o TARGET | grep -q "^$ROOT"; then
        echo "check-quickstart: mounts left under $ROOT; not deleting it" >&2
    elif [ "${KEEP_ROOT:-}" = 1 ]; then
        echo "check-quickstart: kept $ROOT"
    else
        rm -rf "$ROOT"
    fi
}
trap cleanup EXIT

echo "== debootstrap $SUITE into $ROOT"
debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 \
    || { tail -20 "$ROOT.debootstrap.log"; exit 1; }
rm -f "$ROOT.debootstrap.log"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# minbase has no /etc/hosts; a Debian install has this much.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"

echo "== copy this checkout to /root/fanout"
mkdir "$ROOT/root/fanout"
snapshot="$(git -C "$REPO" stash create)"
git -C "$REPO" archive "${snapshot:-HEAD}" | tar -x -C "$ROOT/root/fanout"

ENVIRONMENT=(HOME=/root LANG=C.UTF-8 TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
if [ -n "${QUICKSTART_CA_BUNDLE:-}" ]; then
    cp "$QUICKSTART_CA_BUNDLE" "$ROOT/root/ca-bundle.crt"
    ENVIRONMENT+=(PIP_CERT=/root/ca-bundle.crt)
fi

# Mount what a booted Debian has (inside the namespace given by the caller).
mount_system() {
    mount -t proc proc "$ROOT/proc"
    mount --rbind /dev "$ROOT/dev"
    mount --rbind /sys "$ROOT/sys"
}
export -f mount_system
export ROOT INSTALL RUN HEALTH_TIMEOUT STOP_TIMEOUT

echo "== install block (in /root/fanout)"
printf '%s\n' "$INSTALL"
unshare --mount --fork bash -euc '
    mount_system
    chroot "$ROOT" /usr/bin/env -i "$@" bash -exc "cd /root/fanout
$INSTALL
export -p >/root/quickstart.env"
' check "${ENVIRONMENT[@]}"

echo "== run block, in a private network"
printf '%s\n' "$RUN"
unshare --net --pid --mount --fork --mount-proc bash -euc '
    ip link set lo up
    mount_system
    chroot "$ROOT" /usr/bin/env -i "$@" bash -c ". /root/quickstart.env; cd /root/fanout
$RUN" >"$ROOT/root/server.log" 2>&1 &
    shell=$!
    deadline=$((SECONDS + HEALTH_TIMEOUT))
    until curl -sf -o /dev/null http://127.0.0.1:8000/health; do
        if [ $SECONDS -ge $deadline ] || ! kill -0 $shell 2>/dev/null; then
            echo "check-quickstart: no 200 from /health within ${HEALTH_TIMEOUT}s" >&2
            cat "$ROOT/root/server.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "GET /health: $(curl -s -w " (HTTP %{http_code})" http://127.0.0.1:8000/health)"
    # The supervisor: the one process in this PID namespace running the console script.
    server=$(pgrep -f "^[^ ]*python[0-9.]* [^ ]*/bin/fanout( |$)")
    kill -TERM "$server"
    deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$server" 2>/dev/null; do
        if [ $SECONDS -ge $deadline ]; then echo "check-quickstart: no exit ${STOP_TIMEOUT}s after SIGTERM" >&2; exit 1; fi
        sleep 0.2
    done
    wait $shell && status=0 || status=$?
    echo "== server output"
    cat "$ROOT/root/server.log"
    echo "== server exit status: $status"
    exit $status
' check "${ENVIRONMENT[@]}"
echo "== quick start OK"
