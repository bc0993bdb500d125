#!/bin/sh
# Generates everything the compose cluster needs, with the sessionbus
# binary ($SESSIONBUS, default: sessionbus on PATH; `go build ./cmd/sessionbus`):
#
#   secrets/authority/          the cluster's NATS authority (keys, register):
#                               keep it; services add/revoke --auth-dir use it
#   secrets/ca-key.pem          the CA key (only to issue more certificates)
#   secrets/*.creds, ca.pem     what the containers get as compose secrets:
#                               setup, sessionbus-1, sessionbus-2 (managers),
#                               example-service (service), operator
#   ../nats/auth/auth.conf      operator, accounts and resolver (public)
#   ../nats/secret/             routes.conf (route password), server.pem,
#                               server-key.pem, ca.pem (mounted on the nodes)
#
# Run once, from deploy/docker:   ./gen-secrets.sh
# Nothing here is printed or passed as an argument; existing files are
# never overwritten (remove secrets/ and ../nats/{auth,secret} to start over).
set -eu

sb=${SESSIONBUS:-sessionbus}
here=$(cd "$(dirname "$0")" && pwd)
secrets=${SECRETS_DIR:-$here/secrets}
nats=${NATS_DIR:-$here/../nats}
command -v "$sb" >/dev/null 2>&1 || { echo "gen-secrets.sh: $sb not found (set SESSIONBUS)" >&2; exit 1; }
if [ -e "$secrets/authority" ]; then
	echo "gen-secrets.sh: $secrets/authority exists; refusing to overwrite" >&2
	exit 1
fi

umask 077
mkdir -p "$secrets" "$nats/auth" "$nats/secret"
"$sb" auth init --auth-dir "$secrets/authority" >/dev/null
"$sb" auth nats-config --auth-dir "$secrets/authority" --out "$nats/auth/auth.conf"
"$sb" auth routes-config --routes nats-1:6222,nats-2:6222,nats-3:6222 --out "$nats/secret/routes.conf"
"$sb" certs --out "$nats/secret" --hosts nats-1,nats-2,nats-3,localhost,127.0.0.1 >/dev/null
# The CA key stays off the servers.
mv "$nats/secret/ca-key.pem" "$secrets/ca-key.pem"
cp "$nats/secret/ca.pem" "$secrets/ca.pem"
for id in setup:setup sessionbus-1:manager sessionbus-2:manager example-service:service operator:operator; do
	name=${id%%:*}
	"$sb" services add "$name" --role "${id##*:}" --auth-dir "$secrets/authority" --out "$secrets/$name.creds" >/dev/null
done
# Compose (without swarm) bind-mounts secret files with their mode, and
# the images run as uid 65532: the files are world-readable, but their
# directories are not (0700), so only the containers and you see them.
chmod 0644 "$secrets"/*.creds "$secrets/ca.pem" "$nats/auth/auth.conf" "$nats/secret/ca.pem" "$nats/secret/server.pem"
chmod 0755 "$nats/auth"
echo "generated: $secrets (keep it), $nats/auth, $nats/secret"
