#!/usr/bin/env bash
# What the official image's entrypoint does, in short (written for these tests): as root, own
# PGDATA and step down to postgres with gosu; on an empty PGDATA run initdb, then the
# /docker-entrypoint-initdb.d scripts against a server listening on its socket only; then
# exec the server.
set -Eeo pipefail

if [ "$1" = 'postgres' ] && [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA"
	# only what is not postgres's yet: a chown -R would copy every file of a clone up
	find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
	chmod 700 "$PGDATA"
	exec gosu postgres "$BASH_SOURCE" "$@"
fi

if [ "$1" = 'postgres' ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
	pwfile="$(mktemp)"
	printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
	initdb --username=postgres --pwfile="$pwfile" --auth-host=scram-sha-256 --auth-local=trust > /dev/null
	rm -f "$pwfile"
	printf 'host all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
	pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start > /dev/null
	for f in /docker-entrypoint-initdb.d/*; do
		case "$f" in
			*.sql) psql -v ON_ERROR_STOP=1 --username postgres --no-password -f "$f" > /dev/null ;;
			*.sh) . "$f" ;;
		esac
	done
	pg_ctl -D "$PGDATA" -m fast -w stop > /dev/null
	echo 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
