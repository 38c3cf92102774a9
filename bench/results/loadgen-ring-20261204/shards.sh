#!/bin/bash
# The 10,000-member room with its members spread over 2 shards on one CPU
# against 1 shard, alternating: shards.sh OUT "ROUNDS" RATE BIN_DIR
OUT=$1; ROUNDS=$2; RATE=$3; B=$4
for r in $ROUNDS; do
  for n in 1 2; do
    $B/bench run room-fanout --pin --shards $n --rate $RATE \
      --gateway-bin $B/gateway --loadgen-bin $B/loadgen --out $OUT/shards$n-$r > $OUT/shards$n-$r.log 2>&1
  done
done
