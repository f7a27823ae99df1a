#!/usr/bin/env bash
# requests.sh - which FUSE requests everyday workloads cost, by opcode.
#
#   bench/requests.sh                         (as root; not part of CI)
#   REQ_TARGETS="auto always" REQ_TREE_FILES=2000 bench/requests.sh
#
# The guest kernel's own tracepoint (fuse:fuse_request_send, Linux 6.14+)
# counts every request it sends while one workload runs, so the counts are
# the kernel's, whatever the relay and the daemon do.  The point is to see
# requests a local filesystem would not need (bench/README.md, "Requests").
#
# Workloads, each on a fresh mount per target:
#   untar        tar -xf of bench/make-tree.py's tree (REQ_TREE_FILES files)
#   npm untar    tar -xf of an npm-like node_modules tree (150 packages of
#                package.json, index.js and six lib/*.js)
#   node cold    node resolving and loading those packages from a directory
#                four levels down (module resolution probes many missing
#                names); warm: the same again at once
#   git status   in a committed copy of the tree, twice (the first after
#                the 1 s timeouts of auto expired)
#   rm -rf       of everything
#
# Environment: REQ_TARGETS (pll auto always writeback), REQ_TREE_FILES
# (2000), REQ_TOP (opcodes shown per workload, 6), BENCH_DIR
# (/var/tmp/fsbridge-bench), FSB_BUILD_DIR (default build-bench/).
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "$(readlink -f "$0")")/common.sh" requests "${REQ_TARGETS:-pll auto always writeback}"
tree_files=${REQ_TREE_FILES:-2000}
top=${REQ_TOP:-6}
tracing=/sys/kernel/tracing
event=$tracing/events/fuse/fuse_request_send

bench_setup "mounts, tracefs" tar git node
[[ -d $tracing/events ]] || mount -t tracefs tracefs "$tracing"
[[ -d $event ]] || die "no fuse:fuse_request_send tracepoint (Linux 6.14+ has it)"
cleanup_extra() { trace_off; }

trace_off() {
    echo 0 >"$tracing/tracing_on" 2>/dev/null || true
    echo 0 >"$event/enable" 2>/dev/null || true
}

# counted WHAT CMD...: runs CMD with the tracepoint on; prints the total
# and the most frequent opcodes.
counted() {
    local what=$1
    shift
    echo 0 >"$tracing/tracing_on"
    echo >"$tracing/trace"
    echo 65536 >"$tracing/buffer_size_kb"
    echo 1 >"$event/enable"
    echo 1 >"$tracing/tracing_on"
    "$@" >/dev/null
    trace_off
    local counts total
    counts=$(grep -o 'opcode [0-9]* (FUSE_[A-Z_0-9]*)' "$tracing/trace" |
        sed 's/.*(FUSE_\(.*\))/\1/' | sort | uniq -c | sort -rn)
    total=$(awk '{ n += $1 } END { print n + 0 }' <<<"$counts")
    printf '| %s | %s | %s |\n' "$t" "$what" "$total $(head -"$top" <<<"$counts" |
        awk '{ printf "%s%s %s", sep, $2, $1; sep = ", " }')"
}

make_trees() {
    python3 bench/make-tree.py "$work/req-tree.tar" "$tree_files"
    local app=$work/req-app
    rm -rf "$app" && mkdir -p "$app/src/deep/er"
    python3 - "$app" <<'EOF'
import json, os, sys
root = sys.argv[1]
for i in range(150):
    d = f"{root}/node_modules/pkg{i}"
    os.makedirs(d + "/lib")
    json.dump({"name": f"pkg{i}", "version": "1.0.0", "main": "index.js"},
              open(d + "/package.json", "w"))
    chain = f"require('pkg{i + 1}');" if i % 10 != 9 else ""
    open(d + "/index.js", "w").write(chain + "require('./lib/a');require('./lib/b');\n")
    for n in "abcdef":
        open(f"{d}/lib/{n}.js", "w").write(f"module.exports = '{n}';\n")
open(root + "/src/deep/er/main.js", "w").write(
    "".join(f"require('pkg{i}');\n" for i in range(0, 150, 10)))
EOF
    tar -cf "$work/req-app.tar" -C "$work" req-app
}

run_workloads() {
    local t=$1
    counted "untar" tar -xf "$work/req-tree.tar" -C "$dir"
    counted "npm untar" tar -xf "$work/req-app.tar" -C "$dir"
    counted "node cold" sh -c "cd '$dir/req-app/src/deep/er' && node main.js"
    counted "node warm" sh -c "cd '$dir/req-app/src/deep/er' && node main.js"
    (mkdir "$dir/g" && cd "$dir/g" && git init -q && tar -xf "$work/req-tree.tar" &&
        git add -A && git -c user.name=b -c user.email=b@b commit -qm tree) >/dev/null
    sleep 1.1
    counted "git status" git -C "$dir/g" status --porcelain
    counted "git status again" git -C "$dir/g" status --porcelain
    counted "rm -rf" sh -c "rm -rf '$dir'/*"
}

make_trees
echo "| target | workload | requests: total, most frequent |"
echo "|---|---|---|"
each_target run_workloads
