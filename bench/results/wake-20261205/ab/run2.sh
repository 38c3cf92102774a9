#!/bin/bash
O=$(realpath ${O:-.}); cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"

for i in 4 5 6 7; do
  for b in s37a s37b; do
    ${BINS:-/tmp/bin-}s37b/bench run small-rooms --pin --shards 2 --run-id r$i --gateway-bin ${BINS:-/tmp/bin-}$b/gateway --loadgen-bin ${BINS:-/tmp/bin-}s37b/loadgen --out $O/small-rooms-$b-s2-$i > $O/small-rooms-$b-s2-$i.md 2>$O/small-rooms-$b-s2-$i.err
  done
done
echo done > $O/done2
