#!/bin/bash
# After final.sh: bench wake (both layouts), idle at 10,000 (s37i, s38b, bun), soak --quick with s38b.
while [ ! -f /tmp/r38/final/done ]; do sleep 5; done
O=/tmp/r38/after; mkdir -p $O
B=/tmp/bin-s38b
$B/bench wake --cpus 0,0 --out $O > $O/wake-0,0.md 2>$O/wake-0,0.err
$B/bench wake --cpus 0,1 --out $O > $O/wake-0,1.md 2>$O/wake-0,1.err
for b in s37i s38b; do
  $B/bench run idle --pin --connections 10000 --run-id idle --gateway-bin /tmp/bin-$b/gateway --loadgen-bin $B/loadgen --out $O/idle-$b > $O/idle-$b.md 2>$O/idle-$b.err
done
$B/bench run idle --pin --server bun --connections 10000 --run-id idle --loadgen-bin $B/loadgen --out $O/idle-bun > $O/idle-bun.md 2>$O/idle-bun.err
$B/bench run soak --quick --gateway-bin $B/gateway --loadgen-bin $B/loadgen --out $O/soak > $O/soak.md 2>$O/soak.err
echo done > $O/done
