#!/usr/bin/env bash
# The offline demo: hnindex against the project's fake HackerNews API.
#
#   scripts/demo.sh            # (make demo)
#
# It builds hnfake and hnindex, starts hnfake on 127.0.0.1:8081 (a free
# loopback port if that one is taken; PORT=n picks another) with 200
# generated threads of 20 comments, syncs them into a fresh hnindex-demo.db (its own file, so that an hnindex.db of yours is left alone)
# (SQLite) in the current directory, syncs again (nothing is fetched:
# nothing changed), edits two threads on the fake server and syncs once
# more (only those two are fetched), searches, and stops the fake server.
# The generated dataset and the fake's clock are fixed, so two runs print
# the same but for durations (and the port, if 8081 was taken).
set -euo pipefail

GO=${GO:-go}
DB=${DB:-hnindex-demo.db}
PORT=${PORT:-8081}
bin=$(mktemp -d)
fake_pid=
cleanup() {
	if [ -n "$fake_pid" ]; then kill "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; fi
	rm -rf "$bin"
}
trap cleanup EXIT

echo "+ go build ./cmd/hnfake ./cmd/hnindex"
$GO build -o "$bin/hnfake" ./cmd/hnfake
$GO build -o "$bin/hnindex" ./cmd/hnindex

# start_fake starts hnfake on address $1 and waits for its banner; it
# fails if hnfake exits first (the address is taken).
start_fake() {
	"$bin/hnfake" -addr "$1" -threads 200 -comments 20 >"$bin/hnfake.out" 2>&1 &
	fake_pid=$!
	for _ in $(seq 100); do
		grep -q "serving" "$bin/hnfake.out" 2>/dev/null && return 0
		kill -0 "$fake_pid" 2>/dev/null || { wait "$fake_pid" || true; fake_pid=; return 1; }
		sleep 0.05
	done
}
start_fake "127.0.0.1:$PORT" || start_fake 127.0.0.1:0 || true
url=$(grep -o 'http://[^ ]*/api/v1' "$bin/hnfake.out" || true)
if [ -z "$url" ]; then
	echo "demo: hnfake did not start:" >&2
	cat "$bin/hnfake.out" >&2
	exit 1
fi
cat "$bin/hnfake.out"
base=${url%/api/v1}

run() {
	echo
	echo "+ hnindex $*"
	"$bin/hnindex" "$@"
}

# A fresh index each time: an index left by an earlier run would make the
# first sync fetch only what that run changed.
echo
echo "+ rm -f $DB $DB-wal $DB-shm"
rm -f "$DB" "$DB-wal" "$DB-shm"

run update --db "$DB" --hn-url "$url" --rate 1000
run update --db "$DB" --hn-url "$url" --rate 1000

# Edit two threads on the fake server: only those two are fetched again.
post() {
	"$GO" run ./scripts/post "$1"
}
ids=$("$bin/hnindex" search --db "$DB" --json --limit 2 rust | grep -o '"thread_id": *"[0-9]*"' | grep -o '[0-9]*' | sort -u | head -2)
for id in $ids; do
	echo
	echo "+ POST $base/_fake/edit?id=$id"
	post "$base/_fake/edit?id=$id"
done
run update --db "$DB" --hn-url "$url" --rate 1000

run search --db "$DB" --limit 3 rust postgres

echo
echo "To look inside the index (its rows, their lineage, a search page), run"
echo "  go run ./cmd/hnindex server --db $DB"
echo "and open http://127.0.0.1:8080 (Ctrl-C stops it)."
