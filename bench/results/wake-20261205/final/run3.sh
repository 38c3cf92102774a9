#!/bin/bash
# Final A/B: main at a41df45 (s37a) against the mesh with the receiver on the default queue (s37e):
# small rooms and DMs, pinned (server CPU 0, loadgen CPU 1), 2 shards every round, 1 shard alternating builds.
O=$(realpath ${O:-.}); cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || echo /work/main)"
B=${BINS:-/tmp/bin-}
for i in 1 2 3 4; do
  for sc in small-rooms dm-latency; do
    for b in s37a s37e; do
      $B${b}/bench run $sc --pin --shards 2 --run-id f$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s37e/loadgen --out $O/$sc-$b-s2-$i > $O/$sc-$b-s2-$i.md 2>$O/$sc-$b-s2-$i.err
    done
    b=$([ $((i % 2)) = 1 ] && echo s37a || echo s37e)
    $B${b}/bench run $sc --pin --shards 1 --run-id f$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s37e/loadgen --out $O/$sc-$b-s1-$i > $O/$sc-$b-s1-$i.md 2>$O/$sc-$b-s1-$i.err
  done
done
echo done > $O/done
