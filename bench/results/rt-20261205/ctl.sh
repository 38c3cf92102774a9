#!/bin/bash
# The mesh receiver on the control queue (s38c) against the default queue (s38b), two shards pinned.
O=/tmp/r38/ctl; mkdir -p $O
B=/tmp/bin-
for i in 1 2 3; do
  for sc in small-rooms dm-latency; do
    for b in s38b s38c; do
      ${B}s38b/bench run $sc --pin --shards 2 --run-id ctl$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s38b/loadgen --out $O/$sc-$b-$i > $O/$sc-$b-$i.md 2>$O/$sc-$b-$i.err
    done
  done
done
for i in 1 2; do for b in s38b s38c; do
  ${B}s38b/bench run room-fanout --pin --shards 2 --rate 10 --run-id ctlbig$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s38b/loadgen --out $O/big-$b-$i > $O/big-$b-$i.md 2>$O/big-$b-$i.err
done; done
echo done > $O/done
