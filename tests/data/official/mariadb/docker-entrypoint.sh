#!/bin/bash
# What the official image's entrypoint does, in short (written for these tests): as root, own
# the data directory and step down to mysql with gosu; on an empty one, mariadb-install-db,
# then a server on its socket only that sets the root password and runs the init scripts;
# then exec the server.
set -eo pipefail
SOCKET=/run/mysqld/mysqld.sock

if [ "$1" = 'mariadbd' ] && [ "$(id -u)" = '0' ]; then
	mkdir -p /var/lib/mysql
	find /var/lib/mysql \! -user mysql -exec chown mysql:mysql '{}' +
	exec gosu mysql "$BASH_SOURCE" "$@"
fi

if [ "$1" = 'mariadbd' ] && [ ! -d /var/lib/mysql/mysql ]; then
	: "${MARIADB_ROOT_PASSWORD:?set MARIADB_ROOT_PASSWORD}"
	mariadb-install-db --datadir=/var/lib/mysql --skip-test-db --auth-root-authentication-method=normal \
		--skip-name-resolve > /dev/null
	mariadbd --skip-networking --socket="$SOCKET" &
	pid=$!
	for _ in $(seq 120); do
		mariadb-admin --socket="$SOCKET" ping > /dev/null 2>&1 && break
		sleep 0.25
	done
	mariadb --socket="$SOCKET" -uroot <<-SQL
		SET @@SESSION.SQL_LOG_BIN=0;
		DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1', 'root'@'$(hostname)';
		ALTER USER 'root'@'localhost' IDENTIFIED BY '${MARIADB_ROOT_PASSWORD}';
		CREATE USER 'root'@'%' IDENTIFIED BY '${MARIADB_ROOT_PASSWORD}';
		GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
	SQL
	for f in /docker-entrypoint-initdb.d/*.sql; do
		[ -e "$f" ] && mariadb --socket="$SOCKET" -uroot -p"$MARIADB_ROOT_PASSWORD" < "$f"
	done
	mariadb-admin --socket="$SOCKET" -uroot -p"$MARIADB_ROOT_PASSWORD" shutdown
	wait "$pid"
	echo 'MariaDB init process done. Ready for start up.'
fi

exec "$@"
