#!/bin/bash
# Unpinned (two CPUs shared with loadgen): small rooms 1 and 2 shards; connect storm pinned. s37i against s38b.
O=/tmp/r38/more; mkdir -p $O
B=/tmp/bin-
for i in 1 2; do
  for sh in 2 1; do for b in s37i s38b; do
    ${B}s38b/bench run small-rooms --shards $sh --run-id un$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s38b/loadgen --out $O/un-$b-s$sh-$i > $O/un-$b-s$sh-$i.md 2>$O/un-$b-s$sh-$i.err
  done; done
  for b in s37i s38b; do
    ${B}s38b/bench run connect-storm --pin --shards 1 --run-id cs$i --gateway-bin $B$b/gateway --loadgen-bin ${B}s38b/loadgen --out $O/cs-$b-$i > $O/cs-$b-$i.md 2>$O/cs-$b-$i.err
  done
done
echo done > $O/done
