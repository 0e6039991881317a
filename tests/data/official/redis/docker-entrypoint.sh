#!/bin/sh
# What the official image's entrypoint does (written for these tests): options alone mean
# redis-server's, and as root it takes /data and steps down to redis with gosu.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' +
	exec gosu redis "$0" "$@"
fi

# files redis writes stay private to it
if [ "$(umask)" = '0022' ]; then
	umask 0077
fi

exec "$@"
