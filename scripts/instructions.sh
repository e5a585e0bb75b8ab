#!/usr/bin/env bash
# Instructions per call of each side of the hit, miss and near-cache benches,
# counted by callgrind: stable where times are not (the same binary and
# inputs give the same count whatever else the machine is doing).
#
# Each side runs alone twice, with N and 3N calls (`*_ONLY`, `*_CALLS`); the
# difference of the two totals divided by 2N is the cost of one call in the
# whole client process (the caller, the connection's task and the runtime),
# without the set-up. Prints a table and, when BENCH_SUMMARY names a file,
# appends verdict rows there (scripts/bench.sh prints them at the end).
#
#   bash scripts/instructions.sh
#
# Needs valgrind (Debian's package); without it, says so and exits 0.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v valgrind >/dev/null; then
    echo "(valgrind not found: no instruction counts; apt-get install valgrind)"
    exit 0
fi
bash scripts/install-redis.sh >/dev/null

# The bench executables, built as `cargo bench` builds them.
exe_of() {
    cargo bench -q -p cache-benches --features bincode --bench "$1" --no-run \
        --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# count EXE VAR SIDE N [SIM]: instructions per call of SIDE (VAR_ONLY /
# VAR_CALLS); with SIM, also I1 misses and indirect branches mispredicted
# per call (callgrind's cache and branch simulation), as "Ir I1mr Bim".
count() {
    local exe=$1 var=$2 side=$3 n=$4 sim=${5:-} runs=()
    local opts=()
    [ -n "$sim" ] && opts=(--cache-sim=yes --branch-sim=yes)
    for calls in "$n" $((3 * n)); do
        env "${var}_ONLY=$side" "${var}_CALLS=$calls" \
            valgrind --tool=callgrind "${opts[@]}" --callgrind-out-file="$work/out" "$exe" \
            >/dev/null 2>"$work/err"
        # The events and their totals, as "name=value" pairs.
        runs+=("$(awk '/^events:/ { for (i = 2; i <= NF; i++) ev[i] = $i }
                      /^(summary|totals):/ { for (i = 2; i <= NF; i++) printf "%s=%s ", ev[i], $i; exit }' "$work/out")")
    done
    awk -v a="${runs[0]}" -v b="${runs[1]}" -v n="$n" -v sim="$sim" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        for (i in x) { split(x[i], p, "="); A[p[1]] = p[2] }
        for (i in y) { split(y[i], p, "="); B[p[1]] = p[2] }
        per = 2 * n
        if (sim) printf "%d %d %d\n", (B["Ir"] - A["Ir"]) / per, (B["I1mr"] - A["I1mr"]) / per, (B["Bim"] - A["Bim"]) / per
        else printf "%d\n", (B["Ir"] - A["Ir"]) / per
    }'
}

hit=$(exe_of hit_path)
miss=$(exe_of miss_path)
near=$(exe_of near_cache)

declare -A per i1 bim
for side in ours solo raw cached; do
    read -r per[hit_$side] i1[hit_$side] bim[hit_$side] < <(count "$hit" HIT_PATH "$side" 2000 sim)
done
for side in ours raw cached; do per[miss_$side]=$(count "$miss" MISS_PATH "$side" 1000); done
for side in near decoding moka; do per[near_$side]=$(count "$near" NEAR "$side" 10000); done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f×", a / b }'; }

echo "### Instructions per call (callgrind, whole client process)"
echo
echo "| path | side | instructions | vs the reference |"
echo "|---|---|---|---|"
echo "| hit | #[cached] | ${per[hit_ours]} | $(ratio "${per[hit_ours]}" "${per[hit_raw]}") raw, $(ratio "${per[hit_ours]}" "${per[hit_cached]}") \`cached\` |"
echo "| hit | #[cached], one command per read | ${per[hit_solo]} | $(ratio "${per[hit_solo]}" "${per[hit_raw]}") raw |"
echo "| hit | redis-rs GET + decode (raw) | ${per[hit_raw]} | 1.000× |"
echo "| hit | \`cached\` crate | ${per[hit_cached]} | $(ratio "${per[hit_cached]}" "${per[hit_raw]}") raw |"
echo "| miss | #[cached] | ${per[miss_ours]} | $(ratio "${per[miss_ours]}" "${per[miss_raw]}") by hand, $(ratio "${per[miss_ours]}" "${per[miss_cached]}") \`cached\` |"
echo "| miss | cache-aside by hand | ${per[miss_raw]} | 1.000× |"
echo "| miss | \`cached\` crate | ${per[miss_cached]} | $(ratio "${per[miss_cached]}" "${per[miss_raw]}") by hand |"
echo "| near-cache hit | #[cached] | ${per[near_near]} | $(ratio "${per[near_near]}" "${per[near_moka]}") moka |"
echo "| near-cache hit | get_or_load (decodes) | ${per[near_decoding]} | $(ratio "${per[near_decoding]}" "${per[near_moka]}") moka |"
echo "| near-cache hit | bare moka get + clone | ${per[near_moka]} | 1.000× |"
echo
echo "Per hit, from callgrind's cache and branch simulation (a cache like this"
echo "machine's): instruction-cache misses and indirect branches mispredicted."
echo "At one task a hit runs once through code that mostly runs once, so its"
echo "time follows the code it touches more than the instructions it counts."
echo
echo "| side | I1 misses | indirect branches mispredicted |"
echo "|---|---|---|"
for side in ours solo raw cached; do
    echo "| $side | ${i1[hit_$side]} | ${bim[hit_$side]} |"
done
echo

if [ -n "${BENCH_SUMMARY:-}" ]; then
    # Rows that inform: the targets are set in time (hit_path, near_cache);
    # these are the same comparisons in a measure that does not move.
    {
        echo "| instructions | hit per call: ours / raw, ours / \`cached\` (callgrind) | $(ratio "${per[hit_ours]}" "${per[hit_raw]}"), $(ratio "${per[hit_ours]}" "${per[hit_cached]}") | — |  |"
        echo "| instructions | miss per call: ours / by hand, ours / \`cached\` (callgrind) | $(ratio "${per[miss_ours]}" "${per[miss_raw]}"), $(ratio "${per[miss_ours]}" "${per[miss_cached]}") | — |  |"
        echo "| instructions | near-cache hit: ours / bare moka (callgrind) | $(ratio "${per[near_near]}" "${per[near_moka]}") | — |  |"
    } >>"$BENCH_SUMMARY"
fi
