#!/bin/bash
# room-fanout, pinned (server CPU 0, loadgen CPU 1), 1 shard, fsync: the
# build before (OLD), after (NEW), and Bun, interleaved;
# round i of every server uses loadgen --run-id ab<i>, so the three see the
# same send schedule (the senders' phases are seeded by the run id).
# usage: OLD=dir NEW=dir [RATES="10 40"] [ROUNDS="1 2 3"] ab.sh OUTDIR
OUT=${1:?out dir}; mkdir -p $OUT; cd /work/main
B=$NEW/bench; L=$NEW/loadgen
for rate in ${RATES:-10 40}; do for i in ${ROUNDS:-1 2 3}; do for s in old new bun; do
  echo "== $(date -u +%H:%M:%S) $s rate $rate round $i" >> $OUT/ab.log
  case $s in
    old) $B run room-fanout --pin --shards 1 --rate $rate --run-id ab$i --gateway-bin $OLD/gateway --loadgen-bin $L --out $OUT/$s-r$rate-$i > $OUT/$s-r$rate-$i.log 2>&1;;
    new) $B run room-fanout --pin --shards 1 --rate $rate --run-id ab$i --gateway-bin $NEW/gateway --loadgen-bin $L --out $OUT/$s-r$rate-$i > $OUT/$s-r$rate-$i.log 2>&1;;
    bun) $B run room-fanout --pin --server bun --rate $rate --run-id ab$i --loadgen-bin $L --out $OUT/$s-r$rate-$i > $OUT/$s-r$rate-$i.log 2>&1;;
  esac
done; done; done
echo done >> $OUT/ab.log
