#!/usr/bin/env bash
# Shows that every loom model can fail: for each deliberate bug listed in
# loom-tests/mutants.txt, switch it on (MULTIOPEN_MUTANT=<name>, read by
# src/sync.rs under --cfg loom only) and check that the named loom tests now
# fail. Exits non-zero if any mutant survives, or if a listed name no longer
# appears in src/. Run without a name filter, it first checks that every
# loom model (each test of each `[[test]]` target of Cargo.toml whose path
# is under loom-tests/) has a line of mutants.txt mapping a mutant to it:
# the same target, and no filter or one that is a substring of its name.
#
# Usage: bash loom-tests/mutants.sh [name-substring]
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom"
only="${1:-}"
logdir="$(mktemp -d)"
echo "== building loom tests once"
cargo test --release --tests --no-run -q
# Every model must be shown able to fail: name the ones no line maps to.
if [[ -z "${only}" ]]; then
    echo "== checking that every loom model has a mutant"
    # The [[test]] targets whose path is under loom-tests/.
    targets=$(awk '
        /^\[/ { name = "" }
        /^name *=/ { gsub(/^name *= *"|"$/, ""); name = $0 }
        /^path *= *"loom-tests\// { if (name != "") print name }
    ' Cargo.toml)
    if [[ -z "${targets}" ]]; then
        echo "no loom test targets found in Cargo.toml"
        exit 1
    fi
    unmapped=()
    models=0
    for target in ${targets}; do
        # `--list` prints one `<name>: test` line per test.
        if ! list=$(cargo test --release -q --test "${target}" -- --list 2>&1); then
            echo "listing the tests of ${target} failed:"
            tail -20 <<<"${list}"
            exit 1
        fi
        tests=$(sed -n 's/: test$//p' <<<"${list}")
        for test in ${tests}; do
            models=$((models + 1))
            mapped=false
            while read -r name t filter; do
                [[ -z "${name}" || "${name}" == \#* || "${t}" != "${target}" ]] && continue
                if [[ -z "${filter}" || "${test}" == *"${filter}"* ]]; then
                    mapped=true
                    break
                fi
            done <loom-tests/mutants.txt
            "${mapped}" || unmapped+=("${target} ${test}")
        done
    done
    if [[ ${#unmapped[@]} -gt 0 ]]; then
        echo "loom models with no mutant in loom-tests/mutants.txt (add a deliberate"
        echo "bug that each one catches; see the header of mutants.txt):"
        printf '  %s\n' "${unmapped[@]}"
        exit 1
    fi
    echo "every loom model (${models}) has a mutant"
fi

caught=0
survived=()
while read -r name target filter; do
    [[ -z "${name}" || "${name}" == \#* ]] && continue
    [[ -n "${only}" && "${name}" != *"${only}"* ]] && continue
    if ! grep -rqF "\"${name}\"" src/; then
        echo "mutant ${name}: not found in src/ (stale entry)"
        exit 1
    fi
    log="${logdir}/${name//[:\/]/_}.log"
    start=$(date +%s)
    # A mutant is caught when its tests fail because a model failed (an
    # assertion, a loom causality/data-race report, or a loom deadlock).
    if MULTIOPEN_MUTANT="${name}" timeout 900 \
        cargo test --release -q --test "${target}" -- ${filter:-} >"${log}" 2>&1; then
        echo "mutant ${name}: SURVIVED (${target} ${filter:-}) — the models did not notice"
        survived+=("${name}")
    elif grep -qE "panicked|deadlock|Causality|FAILED" "${log}"; then
        # The first loom report or failed assertion (expected panics that a
        # model catches itself also print "panicked at", so prefer these).
        # ("race" alone matched "stack backtrace"; a model's own assert!
        # message is the line after its "panicked at".)
        why=$( { grep -m1 -E "deadlock|Causality|data race" "${log}" \
            || grep -m1 -A1 "panicked at" "${log}" | tail -1; } | cut -c1-100 || true)
        echo "mutant ${name}: caught by ${target} ${filter:-} in $(( $(date +%s) - start ))s (${why})"
        caught=$((caught + 1))
    else
        echo "mutant ${name}: run failed without a model failure (timeout or build error); log:"
        tail -20 "${log}"
        survived+=("${name}")
    fi
done < loom-tests/mutants.txt
echo "mutants caught: ${caught}, survived: ${#survived[@]}"
[[ ${#survived[@]} -eq 0 ]]
