#!/usr/bin/env bash
# Runs every test: unit tests (cmocka, ASan/UBSan build) then the integration
# tests (real lab, real kernel). Ends with "N passed, N failed, N skipped".
# TESTS="pattern" runs only the matching tests.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
PATTERN=${TESTS:-}
TIMEOUT=${TEST_TIMEOUT:-600}
# The lab is one per machine (global netns and cgroup names): integration
# tests from concurrent runs (several worktrees, a developer's shell) take
# turns on this lock. flock -o: the lock is not inherited by lab daemons, so
# it is released when the test script ends, whatever it left running.
LAB_LOCK=/run/sonde-lab-session.lock
passed=0 failed=0 skipped=0
failed_names=""
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

record() { # name rc seconds
	case "$2" in
	0) passed=$((passed + 1)); echo "== PASS $1 (${3}s)" ;;
	77) skipped=$((skipped + 1)); echo "== SKIP $1 (${3}s)" ;;
	*) failed=$((failed + 1)); failed_names="$failed_names $1"; echo "== FAIL $1 (rc $2, ${3}s)" ;;
	esac
}

run_one() { # name [--locked] command...
	local name=$1 start rc lock=()
	shift
	# --locked: the time limit starts once the lab is ours, not while
	# another run's test holds it.
	if [ "$1" = --locked ]; then
		lock=(flock -o "$LAB_LOCK")
		shift
	fi
	if [ -n "$PATTERN" ] && [[ "$name" != *$PATTERN* ]]; then return; fi
	echo "== RUN  $name"
	start=$SECONDS
	"${lock[@]}" timeout --kill-after=10 "$TIMEOUT" "$@"
	rc=$?
	[ $rc = 124 ] && echo "== $name timed out after ${TIMEOUT}s"
	record "$name" $rc $((SECONDS - start))
}

for t in build/asan/tests/test_*; do
	[ -x "$t" ] || continue
	run_one "unit/$(basename "$t")" "$t"
done

# A short libFuzzer run of every parser target (make fuzz runs them long).
for f in build/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	n=$(basename "$f")
	work=$(mktemp -d "/tmp/sonde-$n.XXXXXX")
	run_one "fuzz/$n" "$f" -max_total_time="${FUZZ_SHORT_SECONDS:-5}" \
		"$work" "tests/fuzz/corpus/${n#fuzz_}"
	rm -rf "$work"
done

if [ "$(id -u)" != 0 ]; then
	echo "integration tests need root (network namespaces, eBPF): skipped"
	for t in tests/integration/*.sh; do record "integration/$(basename "$t" .sh)" 77 0; done
else
	# A lab left by an earlier run (crash, kill -9) must not break these.
	flock -o "$LAB_LOCK" build/asan/sonde lab down >/dev/null 2>&1 || true
	for t in tests/integration/*.sh; do
		[ -f "$t" ] || continue
		run_one "integration/$(basename "$t" .sh)" --locked bash "$t"
	done
	flock -o "$LAB_LOCK" build/asan/sonde lab down >/dev/null 2>&1 || true
fi

[ -n "$failed_names" ] && echo "failed:$failed_names"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
