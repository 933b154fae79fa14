#!/usr/bin/env bash
# Fails if an entry of the Miri lists in .ci/run names no test: a stale
# entry (a test renamed or removed) silently skips nothing or runs nothing.
#
# The lists are read from .ci/run's own text (so they live in one place)
# and checked against the tests Miri sees: `cargo test --tests -- --list`,
# default features (as `cargo miri test --tests` builds them), no doc tests.
# Entries of `miri_timer` and `miri_skip` are libtest filters: each must be
# a substring of at least one test's full name (`module::path::name`, or
# just the function's name for a test at the top of a tests/*.rs file).
# Entries of `miri_seeded` run with `--exact`: each must be a full name.
#
# Needs the tests built (CI runs it right after `cargo test`): then it only
# lists them, in well under a second. Run alone: `bash .ci/check_miri_lists.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

miri_timer=() miri_skip=() miri_seeded=()
# The three array assignments of .ci/run, each from its `name=(` line to
# its closing `)` line (miri_skip expands miri_timer: timer first).
eval "$(sed -n -e '/^miri_timer=($/,/^)$/p' -e '/^miri_skip=($/,/^)$/p' \
    -e '/^miri_seeded=($/,/^)$/p' .ci/run)"
for list in miri_timer miri_skip miri_seeded; do
    declare -n entries="${list}"
    if [[ ${#entries[@]} -eq 0 ]]; then
        echo "check_miri_lists: found no entries of ${list} in .ci/run (its layout changed?)" >&2
        exit 1
    fi
done
unset -n entries

log="$(mktemp)"
trap 'rm -f "${log}"' EXIT
if ! listing=$(cargo test --tests -- --list 2>"${log}"); then
    cat "${log}" >&2
    echo "check_miri_lists: cannot list the tests" >&2
    exit 1
fi
names=$(sed -n 's/: test$//p' <<<"${listing}")
if [[ -z "${names}" ]]; then
    echo "check_miri_lists: the listing holds no tests" >&2
    exit 1
fi

stale=0
check() { # check <list> <grep flag: -F substring, -xF whole name> <entries...>
    local list="$1" how="$2" entry
    shift 2
    for entry in "$@"; do
        if ! grep -q "${how}" -- "${entry}" <<<"${names}"; then
            echo "check_miri_lists: ${list} entry '${entry}' matches no test" >&2
            stale=$((stale + 1))
        fi
    done
}
check miri_timer -F "${miri_timer[@]}"
check miri_skip -F "${miri_skip[@]}"
check miri_seeded -xF "${miri_seeded[@]}"
if [[ ${stale} -gt 0 ]]; then
    echo "check_miri_lists: ${stale} stale entries in .ci/run's Miri lists (rename or remove them)" >&2
    exit 1
fi
echo "check_miri_lists: every entry of miri_timer (${#miri_timer[@]}), miri_skip (${#miri_skip[@]}) and miri_seeded (${#miri_seeded[@]}) matches a test ($(wc -l <<<"${names}") tests)"
