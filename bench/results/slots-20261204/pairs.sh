#!/bin/bash
# Steady state of the 10,000-member room, the gateway against Bun under the
# same send schedule (loadgen --run-id): ksplit.sh's 4 s window in the middle
# of the send phase, with ACKS=1 (which CPU processed the segments the
# server's sockets received). usage: BIN=dir pairs.sh OUT "RATES" "IDS"
OUT=$1; mkdir -p $(dirname $OUT); cd /work/main
for rate in $2; do for id in $3; do for s in gateway bun; do
  PER=10000 ACKS=1 LOADGEN_ARGS="room --connections 10000 --senders 5 --run-id $id" \
    bench/results/issue14-limits-20261204/ksplit.sh $s $rate pair-$s-$rate-$id 2>&1 | tail -1 >> $OUT
done; done; done
echo done >> $OUT
