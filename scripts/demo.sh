#!/usr/bin/env bash
# The offline demo: hnindex against the project's fake HackerNews API.
#
#   scripts/demo.sh            # (make demo)
#
# It builds hnfake and hnindex, starts hnfake on a free loopback port with
# 200 generated threads of 20 comments, syncs them into hnindex.db (SQLite)
# in the current directory, syncs again (nothing is fetched: nothing
# changed), edits two threads on the fake server and syncs once more (only
# those two are fetched), searches, and stops the fake server.
set -euo pipefail

GO=${GO:-go}
DB=${DB:-hnindex.db}
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

"$bin/hnfake" -addr 127.0.0.1:0 -threads 200 -comments 20 >"$bin/hnfake.out" 2>&1 &
fake_pid=$!
for _ in $(seq 100); do
	grep -q "serving" "$bin/hnfake.out" 2>/dev/null && break
	sleep 0.05
done
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
