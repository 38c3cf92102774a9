#!/bin/bash
# The 10,000-member room at 10 msgs/s, pinned: Bun, s37i and s38a, 1 and 2 shards; two rounds.
O=/tmp/r38/big; mkdir -p $O
B=/tmp/bin-
for i in 1 2; do
  ${B}s38a/bench run room-fanout --pin --server bun --rate 10 --run-id big$i --loadgen-bin ${B}s38a/loadgen --out $O/bun-$i > $O/bun-$i.md 2>$O/bun-$i.err
  for sh in 1 2; do
    for b in s37i s38a; do
      ${B}s38a/bench run room-fanout --pin --shards $sh --rate 10 --run-id big$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s38a/loadgen --out $O/$b-s$sh-$i > $O/$b-s$sh-$i.md 2>$O/$b-s$sh-$i.err
    done
  done
done
echo done > $O/done
