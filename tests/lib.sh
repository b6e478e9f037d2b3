# Shared helpers for integration tests (sourced). Each test is a bash script
# that exits 0 (pass), 77 (skipped: say why), anything else (fail). Tests
# build and tear down their own lab, so each runs alone and in any order.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Tests drive the ASan/UBSan build: a memory error fails the test.
SONDE=${SONDE:-$ROOT/build/asan/sonde}
export SONDE_LAB_DIR=$ROOT/lab
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
TEST_NAME=$(basename "$0" .sh)
TMP=$(mktemp -d "/tmp/sonde-test-$TEST_NAME.XXXXXX")
FAILS=0

log() { printf '[%s] %s\n' "$TEST_NAME" "$*"; }
fail() { printf '[%s] FAIL: %s\n' "$TEST_NAME" "$*"; FAILS=$((FAILS + 1)); }
# Stops the test at once (setup problems, not assertions).
die() { printf '[%s] FATAL: %s\n' "$TEST_NAME" "$*"; exit 1; }
skip() { printf '[%s] SKIP: %s\n' "$TEST_NAME" "$*"; exit 77; }

assert_eq() { # expected actual what
	if [ "$1" = "$2" ]; then log "ok: $3 ($2)"; else fail "$3: expected '$1', got '$2'"; fi
}
assert_ne() { # unexpected actual what
	if [ "$1" != "$2" ]; then log "ok: $3 ($2)"; else fail "$3: got '$2'"; fi
}
assert_contains() { # haystack needle what
	case "$1" in
	*"$2"*) log "ok: $3" ;;
	*) fail "$3: '$2' not found in: $(printf '%s' "$1" | head -c 400)" ;;
	esac
}
# assert_between LOW HIGH VALUE WHAT, numbers may be fractional
assert_between() {
	if awk -v lo="$1" -v hi="$2" -v v="$3" 'BEGIN { exit !(v >= lo && v <= hi) }'; then
		log "ok: $4 = $3 (in [$1, $2])"
	else
		fail "$4 = $3, not in [$1, $2]"
	fi
}

lab() { "$SONDE" lab "$@"; }

# Brings a fresh lab up for this test and always takes it down at exit, so a
# failed assertion never leaves a lab behind for the next test.
lab_fresh_up() {
	LAB_OWNED=1
	lab down >/dev/null 2>&1 || true
	trap 'finish' EXIT
	lab up "$@" || die "sonde lab up $* failed"
}

# Runs at exit: tear down, keep artefacts of failures, report.
finish() {
	local rc=$?
	[ -n "${ON_EXIT:-}" ] && eval "$ON_EXIT"
	# Whatever the test started in the background and did not stop (an
	# agent, a server, a client) dies with it, on every exit path: a failed
	# assertion or a die() must not leave ASan agents running for the next
	# tests (or for an hour).
	local left
	left=$(jobs -p)
	if [ -n "$left" ]; then
		kill -TERM $left 2>/dev/null
		sleep 0.5
		kill -KILL $left 2>/dev/null
		wait $left 2>/dev/null
	fi
	# Only a test that brought the lab up takes it down: one that needs
	# no lab (run by hand, outside the lab lock) must not pull it from
	# under another run's test.
	if [ "${LAB_OWNED:-0}" = 1 ] && [ "${KEEP_LAB:-0}" != 1 ]; then
		lab down >/dev/null 2>&1 || true
	fi
	if [ "$rc" = 0 ] && [ "$FAILS" = 0 ]; then
		rm -rf "$TMP"
	else
		log "artefacts kept in $TMP"
	fi
	if [ "$rc" = 77 ]; then exit 77; fi
	if [ "$rc" != 0 ]; then exit "$rc"; fi
	[ "$FAILS" = 0 ] || exit 1
	exit 0
}

# Ends a test: pass when no assertion failed.
done_testing() {
	if [ "$FAILS" = 0 ]; then log "PASS"; exit 0; fi
	log "$FAILS assertion(s) failed"
	exit 1
}

# A pod's field from the lab state, by pod or workload name: pod_field NAME .ip
pod_field() {
	jq -r --arg n "$1" \
		'[.pods[] | select(.name == $n or .workload == $n)][0]'"$2" \
		/run/sonde-lab/state.json
}

# Waits up to $1 seconds for command "$2..." to succeed.
wait_for() {
	local t=$1
	shift
	local end=$((SECONDS + t))
	while ! "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.2
	done
	return 0
}
