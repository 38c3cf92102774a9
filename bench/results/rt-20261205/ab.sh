#!/bin/bash
# A/B: s37i (glommio, main before this session) against s38a (gateway::rt): pinned, small rooms and DMs, 1 and 2 shards.
O=/tmp/r38/ab; mkdir -p $O
B=/tmp/bin-
for i in 1 2 3; do
  for sc in small-rooms dm-latency; do
    for sh in 2 1; do
      for b in s37i s38a; do
        ${B}s38a/bench run $sc --pin --shards $sh --run-id ab$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s38a/loadgen --out $O/$sc-$b-s$sh-$i > $O/$sc-$b-s$sh-$i.md 2>$O/$sc-$b-s$sh-$i.err
      done
    done
  done
done
echo done > $O/done
