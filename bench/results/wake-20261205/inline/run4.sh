#!/bin/bash
# Big room with two shards (the case where a long write pass could hold mesh messages back),
# then small rooms and DMs: before (s37a), receiver on the default queue without the ring's
# inline round (s37e), the merged build with it (s37g). Pinned: server CPU 0, loadgen CPU 1.
O=$(realpath ${O:-.}); cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel 2>/dev/null || echo /work/main)"
B=${BINS:-/tmp/bin-}
for i in 1 2; do
  for b in s37a s37e s37g; do
    ${B}s37g/bench run room-fanout --pin --shards 2 --rate 10 --run-id g$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s37g/loadgen --out $O/room-$b-$i > $O/room-$b-$i.md 2>$O/room-$b-$i.err
  done
done
for i in 1 2; do
  for sc in small-rooms dm-latency; do
    for b in s37e s37g; do
      ${B}s37g/bench run $sc --pin --shards 2 --run-id h$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s37g/loadgen --out $O/$sc-$b-$i > $O/$sc-$b-$i.md 2>$O/$sc-$b-$i.err
    done
  done
done
echo done > $O/done
