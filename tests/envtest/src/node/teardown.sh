#!/bin/sh
# Undoes everything a node of the envtest harness did (tests/envtest/src/node.rs), whatever
# state it got to: run by the node's watchdog when the test process ends (exit, panic,
# SIGKILL), and before a node starts if the previous one's teardown never ran.
#
#   sh teardown.sh NODE_DIR BRIDGE CGROUP_NAME KUBE_PROXY_BINARY
#
# Every step is best effort and idempotent. Processes are killed by pid only: the node's
# process group (its pgid file), every process in the node's pod cgroups, and every process
# whose command line names NODE_DIR (containerd's shims name its socket).
D=$1
BR=$2
CG=$3
KP=$4
[ -n "$D" ] && [ -d "$D" ] || exit 0
echo "teardown of $D started $(date +%T.%N)"
me=$$
parent=$PPID

# 1. kubelet, kube-proxy, kube-scheduler, containerd: stop them before their work is undone.
if [ -f "$D/pgid" ]; then
  pg=$(cat "$D/pgid")
  kill -TERM -"$pg" 2>/dev/null && sleep 1
  kill -KILL -"$pg" 2>/dev/null
fi

# 2. Containers and shims.
kill_cgroup_procs() {
  for f in $(find /sys/fs/cgroup/*/"$CG" -name cgroup.procs 2>/dev/null); do
    for p in $(cat "$f" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
}
kill_ours() {
  for f in $(grep -laF "$D/" /proc/[0-9]*/cmdline 2>/dev/null); do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    [ "$pid" = "$me" ] || [ "$pid" = "$parent" ] && continue
    kill -KILL "$pid" 2>/dev/null
  done
}
for _ in 1 2 3; do kill_cgroup_procs; kill_ours; sleep 0.3; done

echo "  processes done $(date +%T.%N)"
# 3. Mounts under the node's directory (deepest first): overlay rootfs, shm, secrets, netns.
for _ in 1 2 3; do
  awk -v d="$D/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
done
# Pod network namespaces that containerd put in /run/netns (older containerd): only those
# holding an address of the node's pod subnet.
if [ -f "$D/pod-subnet-prefix" ] && [ -d /run/netns ]; then
  prefix=$(cat "$D/pod-subnet-prefix")
  for ns in /run/netns/cni-*; do
    [ -e "$ns" ] || continue
    if ip -n "$(basename "$ns")" -o -4 addr 2>/dev/null | grep -qF " $prefix"; then
      ip netns delete "$(basename "$ns")" 2>/dev/null
    fi
  done
fi

echo "  mounts done $(date +%T.%N)"
# 4. iptables: kube-proxy's own clean-up, then every KUBE-* (kubelet, kube-proxy) and
# STALLWATCH-* chain and every rule that jumps to one, in both families.
[ -x "$KP" ] && "$KP" --cleanup >/dev/null 2>&1
for ipt in iptables ip6tables; do
  command -v "$ipt" >/dev/null 2>&1 || continue
  for t in filter nat mangle raw; do
    "$ipt" -t "$t" -S 2>/dev/null | grep -E -- '^-A [A-Z]+ .*-j (KUBE-|STALLWATCH-)' | sed 's/^-A /-D /' |
      while read -r rule; do eval "$ipt -t $t $rule" 2>/dev/null; done
    for c in $("$ipt" -t "$t" -S 2>/dev/null | awk '/^-N (KUBE-|STALLWATCH-)/ {print $2}'); do
      "$ipt" -t "$t" -F "$c" 2>/dev/null
    done
    for c in $("$ipt" -t "$t" -S 2>/dev/null | awk '/^-N (KUBE-|STALLWATCH-)/ {print $2}'); do
      "$ipt" -t "$t" -X "$c" 2>/dev/null
    done
  done
done

echo "  iptables done $(date +%T.%N)"
# 5. The bridge (its routes and the veths' peers go with it).
ip link del "$BR" 2>/dev/null

# 6. Sysctls as they were before the node (the kubelet sets vm.overcommit_memory,
# kernel.panic, kernel.panic_on_oops, ...).
if [ -f "$D/sysctls.saved" ]; then
  while IFS='=' read -r key value; do
    [ -n "$key" ] && printf '%s\n' "$value" > "/proc/sys/$(echo "$key" | tr . /)" 2>/dev/null
  done < "$D/sysctls.saved"
fi

# 7. The pod cgroups, deepest first.
for c in /sys/fs/cgroup/*/"$CG"; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# 8. containerd's shim sockets, when /run/containerd was ours.
[ -f "$D/run-containerd-ours" ] && rm -rf /run/containerd

echo "  bridge, sysctls, cgroups done $(date +%T.%N)"
# 9. The directory (never across a mount point that failed to unmount).
rm -rf --one-file-system "$D" 2>/dev/null
echo "teardown of $D done $(date +%T.%N)"
exit 0
