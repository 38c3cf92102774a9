#!/bin/bash
# Small rooms and DMs, gateway and Bun, with the loadgen of this directory:
#   shapes.sh OUT ROUND BIN_DIR
OUT=$1; R=$2; B=$3
$B/bench run small-rooms --steps 1000,2000,3000,4000,6000,8000 --stop-p99-ms 10 --shards 1 --pin \
  --gateway-bin $B/gateway --loadgen-bin $B/loadgen --out $OUT/sr-gw-$R > $OUT/sr-gw-$R.log 2>&1
$B/bench run small-rooms --steps 1000,2000,3000,4000,6000,8000 --stop-p99-ms 10 --server bun --pin \
  --loadgen-bin $B/loadgen --out $OUT/sr-bun-$R > $OUT/sr-bun-$R.log 2>&1
$B/bench run dm-latency --pin --shards 1 --duration 10s \
  --gateway-bin $B/gateway --loadgen-bin $B/loadgen --out $OUT/dm-gw-$R > $OUT/dm-gw-$R.log 2>&1
$B/bench run dm-latency --pin --server bun --duration 10s \
  --loadgen-bin $B/loadgen --out $OUT/dm-bun-$R > $OUT/dm-bun-$R.log 2>&1
