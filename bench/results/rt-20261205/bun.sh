#!/bin/bash
while [ ! -f /tmp/r38/after/done ]; do sleep 5; done
O=/tmp/r38/bun; mkdir -p $O
B=/tmp/bin-s38b
for i in 1 2; do
  for sc in small-rooms dm-latency; do
    $B/bench run $sc --pin --server bun --run-id fin$i --loadgen-bin $B/loadgen --out $O/$sc-bun-$i > $O/$sc-bun-$i.md 2>$O/$sc-bun-$i.err
  done
done
echo done > $O/done
