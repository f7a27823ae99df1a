#!/usr/bin/env bash
# demo.sh - THE main job of fsbridge: build it, export a directory with
# fsbridged, mount it with fsbridge-mount over a Unix socket, and use the
# mount like a local disk, printing every command as it runs.
#
#   ./demo.sh            (as root, or as a user allowed to use fusermount3)
#
# Everything happens under $FSB_DEMO_DIR (default /tmp/fsbridge-demo): the
# exported directory export/, the mount point mnt/, the daemon's socket and
# log.  The mount and the daemon are removed at the end, also on error.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")"
demo=${FSB_DEMO_DIR:-/tmp/fsbridge-demo}
export_dir=$demo/export
mnt=$demo/mnt
sock=$demo/fsbridged.sock
log=$demo/fsbridged.log
daemon_pid=
daemon_started=   # set once this run's fsbridged writes $log
stage=

if [[ -t 1 ]]; then B=$'\e[1m' C=$'\e[36m' N=$'\e[0m'; else B='' C='' N=''; fi
title() { stage=$*; printf '\n%s== %s ==%s\n' "$B" "$*" "$N"; }
note() { printf '%s# %s%s\n' "$C" "$*" "$N"; }
# quote ARGS...: the arguments as one shell-readable line.
quote() {
    local a out=()
    for a in "$@"; do
        if [[ $a =~ ^[][A-Za-z0-9_./:=,@+%-]+$ ]]; then out+=("$a")
        else out+=("'${a//\'/\'\\\'\'}'"); fi
    done
    printf '%s' "${out[*]}"
}
# run CMD...: print the command as a shell prompt line, then run it.
run() { printf '%s$ %s%s\n' "$B" "$(quote "$@")" "$N"; "$@"; }
# runsh 'CMD': the same for a command line with pipes or redirections.
runsh() { printf '%s$ %s%s\n' "$B" "$1" "$N"; bash -c "$1"; }

unmount() {
    if mountpoint -q "$mnt" 2>/dev/null || grep -qs " $mnt fuse" /proc/mounts; then
        if ((EUID == 0)); then umount "$mnt" 2>/dev/null || umount -l "$mnt"
        else fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt"; fi
    fi
}

cleanup() {
    local rc=$?
    unmount || true
    if [[ -n $daemon_pid ]] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    ((rc == 0)) && return
    # Point at the daemon's log only once this run started it: before
    # that, $log is missing or a previous run's.
    if [[ -n $daemon_started && -f $log ]]; then
        echo "demo.sh: failed (exit $rc) in step \"$stage\"; fsbridged's log, $log, ends:" >&2
        tail -n 20 "$log" >&2
    else
        echo "demo.sh: failed (exit $rc) in step \"$stage\", before fsbridged started;" \
             "the messages above say why" >&2
    fi
}
trap cleanup EXIT

# A listening Unix socket shows in /proc/net/unix with the SO_ACCEPTCON flag.
socket_listening() {
    awk -v p="$1" '$8 == p && $4 == "00010000" { found = 1 } END { exit !found }' /proc/net/unix
}

title "1. Dependencies and build"
# Before the long part: FSB_DEMO_DIR must be a directory we can write.
if ! mkdir -p "$demo" || [[ ! -w $demo ]]; then
    echo "demo.sh: cannot work in FSB_DEMO_DIR=$demo (it must be a writable directory)" >&2
    exit 1
fi
scripts/install-deps.sh
if [[ ! -f build/meson-private/coredata.dat ]]; then
    run meson setup build --buildtype=release
else
    note "build/ is already configured: building it as it is"
fi
run ninja -C build
[[ -c /dev/fuse ]] || { echo "demo.sh: /dev/fuse does not exist: cannot mount" >&2; exit 1; }

title "2. A directory on the host to share"
unmount || true
rm -rf "$demo"
mkdir -p "$export_dir/docs" "$mnt"
printf 'Hello from the host!\n' >"$export_dir/hello.txt"
printf '# Notes\n\nThis file lives on the host, in %s.\n' "$export_dir" >"$export_dir/docs/notes.md"
seq 1 100000 >"$export_dir/numbers.txt"
run ls -l "$export_dir"

title "3. Host: export it with fsbridged"
note "fsbridged serves FUSE requests for the export 'demo' on a Unix socket"
note "(for a Firecracker VM the same socket would be its hybrid-vsock path, e.g. v.sock_5001)"
printf '%s$ %s &%s\n' "$B" "build/fsbridged --export demo=$export_dir,cache=auto --listen unix:$sock" "$N"
build/fsbridged --export "demo=$export_dir,cache=auto" --listen "unix:$sock" 2>"$log" &
daemon_pid=$!
daemon_started=1
for _ in $(seq 100); do
    socket_listening "$sock" && break
    kill -0 "$daemon_pid" 2>/dev/null || { echo "demo.sh: fsbridged exited at start" >&2; exit 1; }
    sleep 0.05
done
socket_listening "$sock" || { echo "demo.sh: fsbridged did not start listening" >&2; exit 1; }
run cat "$log"

title "4. Guest side: mount it with fsbridge-mount"
note "in a VM this runs inside the guest (vsock:2:5001 or serial:/dev/vport0p1); here it is this machine"
run build/fsbridge-mount -o export=demo "unix:$sock" "$mnt"
runsh "grep ' $mnt ' /proc/mounts"

title "5. Use it like a local disk"
run ls -l "$mnt"
run cat "$mnt/hello.txt"
run cat "$mnt/docs/notes.md"
runsh "wc -l $mnt/numbers.txt && tail -n 1 $mnt/numbers.txt"

note "write through the mount ... and the file is on the host:"
runsh "echo 'Written inside the guest.' > $mnt/from-guest.txt"
run cat "$export_dir/from-guest.txt"
runsh "echo 'Appended.' >> $mnt/from-guest.txt"
run cat "$export_dir/from-guest.txt"

note "directories, renames and symlinks (the host never follows a symlink: the guest resolves it)"
run mkdir -p "$mnt/src/lib"
run mv "$mnt/from-guest.txt" "$mnt/src/lib/moved.txt"
run ln -s ../../hello.txt "$mnt/src/lib/link-to-hello"
run ls -l "$mnt/src/lib"
run cat "$mnt/src/lib/link-to-hello"
run ls -l "$export_dir/src/lib"

note "permissions and ownership: made through the mount, seen on the host"
run chmod 640 "$mnt/src/lib/moved.txt"
run stat -c '%A %U:%G %n' "$export_dir/src/lib/moved.txt"

title "6. A git repository inside the mount"
git_id=(-c user.name="fsbridge demo" -c user.email=demo@example.invalid -c init.defaultBranch=main)
run git "${git_id[@]}" -C "$mnt" init -q
run git -C "$mnt" add -A
run git "${git_id[@]}" -C "$mnt" commit -q -m "First commit, made inside the mount"
run git -C "$mnt" log --shortstat --format='%h %s'
runsh "echo 'A change.' >> $mnt/hello.txt"
run git -C "$mnt" status --short
note "the host sees the same repository:"
run git -C "$export_dir" log --oneline

title "7. Filesystem size (statfs of the host directory)"
run df -h "$mnt"

title "8. Unmount and stop the daemon"
if ((EUID == 0)); then run umount "$mnt"; else run fusermount3 -u "$mnt"; fi
printf '%s$ %s%s\n' "$B" "kill -TERM $daemon_pid   # fsbridged" "$N"
kill -TERM "$daemon_pid"
daemon_rc=0
wait "$daemon_pid" || daemon_rc=$?
daemon_pid=
note "fsbridged exited with status $daemon_rc; its log:"
run cat "$log"
((daemon_rc == 0)) || exit 1
title "Done: the files stay on the host in $export_dir"
