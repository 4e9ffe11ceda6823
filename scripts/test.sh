#!/usr/bin/env bash
# scripts/test.sh — run the Go tests with a PostgreSQL server available.
#
# Usage:
#   scripts/test.sh [go test flags...]           # tests ./...
#   scripts/test.sh ./pkg/a/ ./pkg/b/... [flags]  # tests only the listed packages
#
# By default this runs
#   go test -race -count=1 -timeout 15m "$@" ./...
# If the first argument starts with "./", the arguments are taken to be the
# package list (plus any flags) and ./... is not appended:
#   go test -race -count=1 -timeout 15m "$@"
# Flags given later override the defaults (e.g. -timeout 30m, -count=3).
#
# Which PostgreSQL is used (exported as TIDEMARK_TEST_DATABASE_URL):
#   1. TIDEMARK_TEST_DATABASE_URL, if set and reachable;
#   2. else the local server on 127.0.0.1:5432, if reachable
#      (postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable);
#   3. else a throwaway cluster: initdb into a temp dir under ${TMPDIR:-/tmp},
#      started on the first free port from 55432 upward, listening on
#      127.0.0.1 only, and stopped and removed when this script exits.
#      When run as root, initdb/pg_ctl run as the "postgres" OS user.
#
# Environment:
#   TIDEMARK_TEST_DATABASE_URL     preferred server (step 1).
#   TIDEMARK_TEST_FORCE_THROWAWAY  if set to a non-empty value other than "0",
#                                  skip steps 1 and 2 and always start a
#                                  throwaway cluster (used to test this script).
#   TIDEMARK_CHROMIUM              the Chromium the browser tests run
#                                  (hnindex/browser_test.go); it must be an
#                                  executable. Default: chromium on PATH.
#   CI                             "true" makes a missing Chromium (or
#                                  PostgreSQL) a failure rather than a skip.
#
# The browser tests need Chromium. When TIDEMARK_CHROMIUM is unset and
# `chromium` is not on PATH, this installs Debian's package (apt-get install -y
# chromium, after apt-get update if the package lists lack it), as root or with
# `sudo -n`, and exports its path as TIDEMARK_CHROMIUM. If that cannot be done,
# the run fails under CI=true; otherwise the browser tests skip, saying why.
#
# Before each long step it says what it is doing: downloading the Go modules
# (only when some are missing from the module cache, with a count every 10 s),
# installing Chromium, starting a throwaway PostgreSQL, building and running
# the tests.
#
# The exit status is go test's exit status (or non-zero if no server could be
# started, or no Chromium found under CI=true).
set -euo pipefail

readonly DEFAULT_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
readonly FIRST_PORT=55432
readonly LAST_PORT=55531

log() { printf 'test.sh: %s\n' "$*" >&2; }

# redact hides a password in a postgres:// URL before it is printed.
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# pg_bindir prints the directory holding the server binaries, or nothing.
pg_bindir() {
	if command -v pg_config >/dev/null 2>&1; then
		pg_config --bindir 2>/dev/null || true
	fi
}
PG_BINDIR="$(pg_bindir)"

# pg_tool NAME prints the path of a PostgreSQL client/server program: from
# $(pg_config --bindir) if it is there, else from PATH.
pg_tool() {
	if [[ -n "$PG_BINDIR" && -x "$PG_BINDIR/$1" ]]; then
		printf '%s\n' "$PG_BINDIR/$1"
	elif command -v "$1" >/dev/null 2>&1; then
		command -v "$1"
	else
		log "cannot find PostgreSQL program '$1' (install PostgreSQL; pg_config must be on PATH)"
		return 1
	fi
}

# reachable URL succeeds if a server accepts a connection for URL. psql also
# checks that authentication works and the database exists; pg_isready is
# the fallback when psql is missing.
reachable() {
	local psql pg_isready
	if psql="$(command -v psql 2>/dev/null)" || { [[ -n "$PG_BINDIR" && -x "$PG_BINDIR/psql" ]] && psql="$PG_BINDIR/psql"; }; then
		PGCONNECT_TIMEOUT=3 "$psql" -X -q -A -t -d "$1" -c 'select 1' >/dev/null 2>&1
	elif pg_isready="$(command -v pg_isready 2>/dev/null)" || { [[ -n "$PG_BINDIR" && -x "$PG_BINDIR/pg_isready" ]] && pg_isready="$PG_BINDIR/pg_isready"; }; then
		"$pg_isready" -q -t 3 -d "$1" >/dev/null 2>&1
	else
		log "neither psql nor pg_isready found"
		return 1
	fi
}

# port_free PORT succeeds if nothing accepts TCP connections on 127.0.0.1:PORT.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# as_pg CMD... runs CMD as the postgres OS user when we are root (initdb and
# pg_ctl refuse to run as root), otherwise as ourselves.
as_pg() {
	if [[ "$(id -u)" -ne 0 ]]; then
		"$@"
	elif command -v runuser >/dev/null 2>&1; then
		runuser -u postgres -- "$@"
	else
		# %q quoting is bash syntax, so the command must run under bash.
		su postgres -s /bin/bash -c "$(printf '%q ' "$@")"
	fi
}

THROWAWAY_DIR=""
THROWAWAY_PG_CTL=""

THROWAWAY_REDIS_DIR=""

cleanup() {
	if [[ -n "$THROWAWAY_REDIS_DIR" ]]; then
		if [[ -f "$THROWAWAY_REDIS_DIR/redis.pid" ]]; then
			kill "$(cat "$THROWAWAY_REDIS_DIR/redis.pid")" 2>/dev/null || true
		fi
		rm -rf -- "$THROWAWAY_REDIS_DIR" || true
		THROWAWAY_REDIS_DIR=""
	fi
	if [[ -n "$THROWAWAY_DIR" ]]; then
		if [[ -f "$THROWAWAY_DIR/data/postmaster.pid" ]]; then
			(cd "$THROWAWAY_DIR" && as_pg "$THROWAWAY_PG_CTL" -D "$THROWAWAY_DIR/data" -m immediate -w stop >/dev/null 2>&1) || true
		fi
		rm -rf -- "$THROWAWAY_DIR" || true
		THROWAWAY_DIR=""
	fi
}

start_throwaway() {
	local initdb pg_ctl tmp port
	initdb="$(pg_tool initdb)"
	pg_ctl="$(pg_tool pg_ctl)"

	tmp="$(mktemp -d "${TMPDIR:-/tmp}/tidemark-pgtest.XXXXXX")"
	THROWAWAY_DIR="$tmp"
	THROWAWAY_PG_CTL="$pg_ctl"
	trap cleanup EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM

	log "starting a throwaway PostgreSQL in $tmp (initdb, then pg_ctl start)…"
	mkdir -p "$tmp/data" "$tmp/sock"
	if [[ "$(id -u)" -eq 0 ]]; then
		chown -R postgres:postgres "$tmp"
		if ! as_pg test -w "$tmp/data"; then
			log "the postgres user cannot write to $tmp (is a parent of ${TMPDIR:-/tmp} private?); set TMPDIR=/tmp"
			return 1
		fi
	fi

	# Run from inside the temp dir so the postgres user never has to access
	# our working directory.
	if ! (cd "$tmp" && as_pg "$initdb" -D "$tmp/data" -U postgres -A trust --no-sync -E UTF8 >"$tmp/initdb.log" 2>&1); then
		log "initdb failed:"
		cat "$tmp/initdb.log" >&2
		return 1
	fi

	for ((port = FIRST_PORT; port <= LAST_PORT; port++)); do
		port_free "$port" || continue
		if (cd "$tmp" && as_pg "$pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 60 \
			-o "-p $port -k $tmp/sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
			start >/dev/null 2>&1); then
			TIDEMARK_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
			export TIDEMARK_TEST_DATABASE_URL
			log "using throwaway PostgreSQL at $TIDEMARK_TEST_DATABASE_URL (data dir $tmp, removed on exit)"
			return 0
		fi
		# Lost a race for the port, or a real failure: retry on the next port
		# only if the log says the port was taken.
		if ! grep -q 'could not bind\|Address already in use' "$tmp/server.log" 2>/dev/null; then
			log "pg_ctl start failed on port $port:"
			cat "$tmp/server.log" >&2 || true
			return 1
		fi
		: >"$tmp/server.log"
	done
	log "no free port in $FIRST_PORT-$LAST_PORT for a throwaway PostgreSQL"
	return 1
}

# module_zips prints the module cache's zip file, under GOMODCACHE $1, of
# every module go.sum has a content hash of: the most go mod download
# fetches. Upper-case letters are escaped as the cache does ("!" and the
# lower-case letter).
module_zips() {
	awk -v cache="$1" '$2 !~ /\/go\.mod$/ {
		p = $1 "/@v/" $2 ".zip"; e = ""
		for (i = 1; i <= length(p); i++) { c = substr(p, i, 1); e = e (c ~ /[A-Z]/ ? "!" tolower(c) : c) }
		print cache "/cache/download/" e
	}' go.sum | sort -u
}

# count_present counts the files named on stdin that exist.
count_present() {
	local f n=0
	while IFS= read -r f; do
		if [[ -f "$f" ]]; then n=$((n + 1)); fi
	done
	printf '%d\n' "$n"
}

# download_modules fetches the Go modules missing from the module cache
# before go test needs them, saying so and counting them as they arrive,
# instead of leaving go test silent for minutes. A failed download is left
# for go test to report, as it would without this step.
download_modules() {
	if [[ ! -f go.sum || -d vendor ]]; then
		return 0
	fi
	# Everything already in the cache: nothing to say.
	if GOPROXY=off go mod download >/dev/null 2>&1; then
		return 0
	fi
	local cache total pid ticks=0
	cache="$(go env GOMODCACHE)"
	total="$(module_zips "$cache" | wc -l | tr -d ' ')"
	log "downloading Go modules (first run: a few minutes)… $(module_zips "$cache" | count_present) of at most $total in the module cache"
	go mod download &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		ticks=$((ticks + 1))
		if ((ticks % 10 == 0)) && kill -0 "$pid" 2>/dev/null; then
			log "  $(module_zips "$cache" | count_present) of at most $total modules downloaded"
		fi
	done
	if wait "$pid"; then
		log "Go modules downloaded: $(module_zips "$cache" | count_present) of at most $total in the module cache"
	else
		log "downloading the Go modules failed; go test will say why"
	fi
}

# as_root CMD... runs CMD as root: directly when we are root, else with
# sudo -n (never asking for a password); it fails when neither can.
as_root() {
	if [[ "$(id -u)" -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		return 1
	fi
}

# apt_install_chromium installs Debian's chromium package, saying so, with
# apt-get's output in $1 (a log file). A fresh machine may have no package
# lists: then it runs apt-get update and tries once more.
apt_install_chromium() {
	local how="apt-get"
	if [[ "$(id -u)" -ne 0 ]]; then how="sudo -n apt-get"; fi
	log "chromium is missing: installing Debian's for the browser tests ($how install -y chromium; a minute or two)…"
	if as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >"$1" 2>&1; then
		return 0
	fi
	log "apt-get install failed; updating the package lists ($how update) and trying again…"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$1" 2>&1 &&
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >>"$1" 2>&1
}

# chromium_missing says why the browser tests cannot run: a failure under
# CI=true, else a note that they skip.
chromium_missing() {
	if [[ "${CI:-}" == "true" ]]; then
		log "CI=true: the browser tests need Chromium: $*"
		exit 1
	fi
	log "the browser tests will skip: $*"
}

# find_chromium prints the path of the chromium on PATH, if it is an
# executable file (bash's command -v also prints one that is not).
find_chromium() {
	local p
	p="$(command -v chromium 2>/dev/null)" && [[ -f "$p" && -x "$p" ]] && printf '%s\n' "$p"
}

# ensure_chromium finds Chromium for the browser tests, or installs it, and
# exports its path as TIDEMARK_CHROMIUM.
ensure_chromium() {
	local path apt_log
	if [[ -n "${TIDEMARK_CHROMIUM:-}" ]]; then
		if [[ ! -f "$TIDEMARK_CHROMIUM" || ! -x "$TIDEMARK_CHROMIUM" ]]; then
			log "TIDEMARK_CHROMIUM ($TIDEMARK_CHROMIUM) is not an executable file"
			exit 1
		fi
		export TIDEMARK_CHROMIUM
		log "using Chromium from TIDEMARK_CHROMIUM: $TIDEMARK_CHROMIUM"
		return 0
	fi
	if ! path="$(find_chromium)"; then
		if ! command -v apt-get >/dev/null 2>&1; then
			chromium_missing "chromium is not on PATH and there is no apt-get to install it (set TIDEMARK_CHROMIUM)"
			return 0
		fi
		if ! as_root true; then
			chromium_missing "chromium is not on PATH, and installing it needs root or passwordless sudo (apt-get install -y chromium)"
			return 0
		fi
		apt_log="$(mktemp "${TMPDIR:-/tmp}/tidemark-apt.XXXXXX")"
		if ! apt_install_chromium "$apt_log"; then
			log "installing chromium failed; apt-get said:"
			tail -n 20 "$apt_log" >&2 || true
			rm -f -- "$apt_log"
			chromium_missing "apt-get install -y chromium failed"
			return 0
		fi
		rm -f -- "$apt_log"
		if ! path="$(find_chromium)"; then
			chromium_missing "the chromium package is installed but chromium is not on PATH (set TIDEMARK_CHROMIUM)"
			return 0
		fi
		log "installed $("$path" --version 2>/dev/null || echo chromium) at $path"
	fi
	TIDEMARK_CHROMIUM="$path"
	export TIDEMARK_CHROMIUM
	log "using Chromium at $TIDEMARK_CHROMIUM for the browser tests"
}

# redis_answers says a Redis server answers PING at host $1, port $2,
# through bash's /dev/tcp (no client needed).
redis_answers() {
	local reply
	# The braces keep the 2>/dev/null to this exec: on a bare exec it
	# would silence the script's stderr for good.
	{ exec 3<>"/dev/tcp/$1/$2"; } 2>/dev/null || return 1
	printf 'PING\r\n' >&3
	IFS= read -r -t 2 reply <&3 || reply=""
	exec 3<&- 3>&-
	[[ "$reply" == +PONG* ]]
}

# ensure_redis finds Redis for the Redis state store's tests (exported as
# TIDEMARK_TEST_REDIS_URL): TIDEMARK_TEST_REDIS_URL if set, else
# 127.0.0.1:6379, else one throwaway redis-server from the installed
# binary, shared by every test (each test has its own key prefix). Without
# any, the tests start their own, or fail under CI=true.
ensure_redis() {
	local port tmp
	if [[ -n "${TIDEMARK_TEST_REDIS_URL:-}" ]]; then
		export TIDEMARK_TEST_REDIS_URL
		log "using Redis from TIDEMARK_TEST_REDIS_URL"
		return 0
	fi
	if redis_answers 127.0.0.1 6379; then
		TIDEMARK_TEST_REDIS_URL="redis://127.0.0.1:6379/0"
		export TIDEMARK_TEST_REDIS_URL
		log "using local Redis at $TIDEMARK_TEST_REDIS_URL"
		return 0
	fi
	if ! command -v redis-server >/dev/null 2>&1; then
		log "no Redis at 127.0.0.1:6379 and no redis-server to start one: the Redis tests will say so"
		return 0
	fi
	tmp="$(mktemp -d "${TMPDIR:-/tmp}/tidemark-redistest.XXXXXX")"
	THROWAWAY_REDIS_DIR="$tmp"
	trap cleanup EXIT
	for port in $(seq 16379 16399); do
		if redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
			--daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log" >/dev/null 2>&1; then
			for _ in $(seq 50); do
				if redis_answers 127.0.0.1 "$port"; then
					TIDEMARK_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
					export TIDEMARK_TEST_REDIS_URL
					log "started a throwaway Redis at $TIDEMARK_TEST_REDIS_URL (it keeps nothing on disk)"
					return 0
				fi
				sleep 0.1
			done
		fi
	done
	log "starting a throwaway redis-server failed; the Redis tests start their own"
}

download_modules
ensure_chromium
ensure_redis

force="${TIDEMARK_TEST_FORCE_THROWAWAY:-}"
if [[ -n "$force" && "$force" != "0" ]]; then
	log "TIDEMARK_TEST_FORCE_THROWAWAY is set; not looking for a running server"
	start_throwaway
elif [[ -n "${TIDEMARK_TEST_DATABASE_URL:-}" ]] && reachable "$TIDEMARK_TEST_DATABASE_URL"; then
	export TIDEMARK_TEST_DATABASE_URL
	log "using PostgreSQL from TIDEMARK_TEST_DATABASE_URL: $(redact "$TIDEMARK_TEST_DATABASE_URL")"
else
	if [[ -n "${TIDEMARK_TEST_DATABASE_URL:-}" ]]; then
		log "TIDEMARK_TEST_DATABASE_URL ($(redact "$TIDEMARK_TEST_DATABASE_URL")) is not reachable; trying 127.0.0.1:5432"
	fi
	if reachable "$DEFAULT_URL"; then
		TIDEMARK_TEST_DATABASE_URL="$DEFAULT_URL"
		export TIDEMARK_TEST_DATABASE_URL
		log "using local PostgreSQL at $TIDEMARK_TEST_DATABASE_URL"
	else
		start_throwaway
	fi
fi

if [[ $# -gt 0 && "$1" == ./* ]]; then
	set -- go test -race -count=1 -timeout 15m "$@"
else
	set -- go test -race -count=1 -timeout 15m "$@" ./...
fi

log "building and running the tests: $* (the first build with -race takes a few minutes)"
status=0
"$@" || status=$?
exit "$status"
