#!/bin/bash
# A/B of the mesh change: small rooms and DMs, pinned (server CPU 0, loadgen CPU 1), shards 1 and 2.
O=$(realpath ${O:-.}); cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"

for i in 1 2 3; do
  for sc in small-rooms dm-latency; do
    for b in s37a s37b; do
      for s in 2 1; do
        [ $s = 1 ] && [ $b = s37a ] && [ $i != 1 ] && continue
        ${BINS:-/tmp/bin-}s37b/bench run $sc --pin --shards $s --run-id r$i --gateway-bin ${BINS:-/tmp/bin-}$b/gateway --loadgen-bin ${BINS:-/tmp/bin-}s37b/loadgen --out $O/$sc-$b-s$s-$i > $O/$sc-$b-s$s-$i.md 2>$O/$sc-$b-s$s-$i.err
      done
    done
  done
done
echo done > $O/done
