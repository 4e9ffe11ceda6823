#!/usr/bin/env bash
# Runs each runnable use case in examples/, offline, the way its README
# shows, with every file it writes kept in one temporary directory (removed
# at the end; KEEP=1 keeps it and says where):
#
#   scripts/examples.sh                 # (make examples) all four
#   scripts/examples.sh quickstart      # one, by name
#
# Each example starts its own fakes on loopback ports; none needs the
# network, PostgreSQL or Redis. The script stops at the first example that
# fails and exits with its status.
set -euo pipefail

GO=${GO:-go}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
if [ "${KEEP:-}" = 1 ]; then
	trap 'echo "examples: files kept in $work"' EXIT
else
	trap 'rm -rf "$work"' EXIT
fi

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
	names=(quickstart user360 legacysoap pricewatch)
fi

for name in "${names[@]}"; do
	case $name in
	quickstart)
		# Twice: the second run reads no note.
		args=(-notes examples/quickstart/notes -out "$work/notes-index.json" -db "$work/quickstart.db")
		echo "+ go run ./examples/quickstart ${args[*]}"
		$GO run ./examples/quickstart "${args[@]}"
		echo "+ go run ./examples/quickstart ${args[*]}   # again: nothing changed"
		$GO run ./examples/quickstart "${args[@]}"
		;;
	user360)
		echo "+ go run ./examples/user360 -db $work/user360.db"
		$GO run ./examples/user360 -db "$work/user360.db"
		;;
	legacysoap)
		echo "+ go run ./examples/legacysoap -db $work/parts.db"
		$GO run ./examples/legacysoap -db "$work/parts.db"
		;;
	pricewatch)
		echo "+ go run ./examples/pricewatch -db $work/prices.db"
		$GO run ./examples/pricewatch -db "$work/prices.db"
		;;
	*)
		echo "examples: no example named $name (there are quickstart, user360, legacysoap, pricewatch)" >&2
		exit 2
		;;
	esac
	echo
done
