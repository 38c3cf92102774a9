#!/bin/bash
# Final A/B: s37i (glommio, main at 0f3f427's gateway) against s38b (gateway::rt, 46a5724): pinned.
O=/tmp/r38/final; mkdir -p $O
B=/tmp/bin-
for i in 1 2 3; do
  for sc in small-rooms dm-latency; do
    for sh in 2 1; do
      for b in s37i s38b; do
        ${B}s38b/bench run $sc --pin --shards $sh --run-id fin$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s38b/loadgen --out $O/$sc-$b-s$sh-$i > $O/$sc-$b-s$sh-$i.md 2>$O/$sc-$b-s$sh-$i.err
      done
    done
  done
done
for i in 1 2; do
  ${B}s38b/bench run room-fanout --pin --server bun --rate 10 --run-id finbig$i --loadgen-bin ${B}s38b/loadgen --out $O/big-bun-$i > $O/big-bun-$i.md 2>$O/big-bun-$i.err
  for sh in 1 2; do
    for b in s37i s38b; do
      ${B}s38b/bench run room-fanout --pin --shards $sh --rate 10 --run-id finbig$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s38b/loadgen --out $O/big-$b-s$sh-$i > $O/big-$b-s$sh-$i.md 2>$O/big-$b-s$sh-$i.err
    done
  done
done
echo done > $O/done
