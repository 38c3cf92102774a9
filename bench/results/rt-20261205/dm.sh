#!/bin/bash
O=/tmp/r38/dm; mkdir -p $O
B=/tmp/bin-
for i in 1 2 3 4; do
  for sh in 1 2; do
    for b in s37i s38a; do
      ${B}s38a/bench run dm-latency --pin --shards $sh --run-id dm$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s38a/loadgen --out $O/$b-s$sh-$i > $O/$b-s$sh-$i.md 2>$O/$b-s$sh-$i.err
    done
  done
done
echo done > $O/done
