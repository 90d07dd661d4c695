#!/usr/bin/env bash
# Multi-host demo: two network namespaces act as two hosts joined by a veth "LAN".
# A vxvde network (UDP multicast 239.1.2.3) spans both hosts; on each host an ioth switch has the
# vxvde network as one of its ports, and ioth stacks join the local switch with vde://.
# Node A (192.0.2.1, 2001:db8:5::1) runs on host A; host B pings it over the virtual network.
# Everything happens inside the two namespaces, which are deleted at the end. Needs root.
set -euo pipefail
IOTH=${IOTH:-ioth}
tag=$$
A=ioth-hostA-$tag B=ioth-hostB-$tag
work=$(mktemp -d /tmp/ioth-multihost-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== two hosts ($A, $B) joined by a veth pair, 198.18.0.1 <-> 198.18.0.2"
ip netns add "$A"; ip netns add "$B"
ip link add vethA netns "$A" type veth peer name vethB netns "$B"
ip -n "$A" addr add 198.18.0.1/24 dev vethA
ip -n "$B" addr add 198.18.0.2/24 dev vethB
for side in A B; do
  ns=${!side}
  ip -n "$ns" link set lo up
  ip -n "$ns" link set "veth$side" up
  ip -n "$ns" route add 239.0.0.0/8 dev "veth$side"   # multicast stays on the veth LAN
done

echo "== an ioth switch on each host, joined by vxvde://239.1.2.3"
ip netns exec "$A" "$IOTH" switch "$work/swA" --port vxvde://239.1.2.3 & pids+=($!)
ip netns exec "$B" "$IOTH" switch "$work/swB" --port vxvde://239.1.2.3 & pids+=($!)
for sw in swA swB; do
  for _ in $(seq 100); do [ -S "$work/$sw/ctl" ] && break; sleep 0.1; done
done

echo "== node A (192.0.2.1, 2001:db8:5::1) on host A's switch"
ip netns exec "$A" "$IOTH" node --vnl "vde://$work/swA" \
  --config "eth,ip=192.0.2.1/24,ip=2001:db8:5::1/64" & pids+=($!)
sleep 1

echo "== from host B, ioth stacks on host B's switch ping node A"
ip netns exec "$B" "$IOTH" ping --vnl "vde://$work/swB" --config "eth,ip=192.0.2.2/24" \
  -c 3 -i 0.2 192.0.2.1
ip netns exec "$B" "$IOTH" ping --vnl "vde://$work/swB" --config "eth,ip=2001:db8:5::2/64" \
  -6 -c 3 -i 0.2 2001:db8:5::1
echo "== multi-host demo passed"
