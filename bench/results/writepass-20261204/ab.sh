#!/bin/bash
# room-fanout, pinned: main before this stop (old: e269c30's code), this stop (final), Bun; interleaved
OUT=${OUT:-/work/main/bench/results/writepass-20261204/final}
mkdir -p $OUT; cd /work/main
B=/tmp/bin-take/bench
for rate in ${RATES:-10 40}; do for i in 1 2 3; do for s in old final bun; do
  echo "== $(date -u +%H:%M:%S) $s rate $rate round $i" >> $OUT/ab.log
  case $s in
    old) $B run room-fanout --pin --shards 1 --rate $rate --gateway-bin /tmp/bin-take/gateway --loadgen-bin /tmp/bin-take/loadgen --out $OUT/$s-r$rate-$i > $OUT/$s-r$rate-$i.log 2>&1;;
    final) $B run room-fanout --pin --shards 1 --rate $rate --gateway-bin ${FINAL:-/tmp/bin-rq}/gateway --loadgen-bin /tmp/bin-take/loadgen --out $OUT/$s-r$rate-$i > $OUT/$s-r$rate-$i.log 2>&1;;
    bun) $B run room-fanout --pin --server bun --rate $rate --loadgen-bin /tmp/bin-take/loadgen --out $OUT/$s-r$rate-$i > $OUT/$s-r$rate-$i.log 2>&1;;
  esac
done; done; done
echo done >> $OUT/ab.log
