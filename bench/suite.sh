#!/usr/bin/env bash
# The full benchmark set behind docs/benchmarks.md, in one run (~30 min on
# 2 cores). Run it on a quiet host: no builds, no other load.
#
#   cargo build --release -p gateway -p loadgen -p bench
#   target/release/bench peers setup
#   bench/suite.sh [OUT_DIR]
#
# room-fanout runs two ladders per system: a 10,000-member room (stopping
# at p99 > 1 s: on 2 cores one message to 10,000 sockets alone costs ~100 ms
# of kernel time, for every server) and a 1,000-member room (stopping at
# p99 > 50 ms).
#
# Every run passes loadgen the run id `suite` (the bench appends each run's
# index), so the gateway and the peers see the same send schedule in each
# scenario: how often messages share a segment depends on the senders'
# phases, which the run id seeds (docs/benchmarks.md, "Connections by
# slot").
#
# Every result JSON, Markdown row and SVG lands in OUT_DIR (default
# bench/results/suite-<date>); the log of the run in OUT_DIR/suite.log.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/results/suite-$(date -u +%Y%m%d-%H%M)}"
B=target/release/bench
mkdir -p "$OUT"
exec > >(tee -a "$OUT/suite.log") 2>&1

step() { echo; echo "== $(date -u +%H:%M:%S) bench $*"; }
DIR="$OUT"
run() { step run "$@"; "$B" run "$@" --run-id suite --out "$DIR" || echo "!! failed: bench run $*"; }
BIG=(--stop-p99-ms 1000)
SMALL=(--connections 1000 --steps 10,20,40,80,160,320,640,1280)
fanout() { run room-fanout "${BIG[@]}" "$@"; run room-fanout "${SMALL[@]}" "$@"; }
# Many small rooms (rooms of 10): the highest rate within 10 ms (issue 14).
ROOMS=(--steps 1000,2000,3000,4000,6000,8000 --stop-p99-ms 10)

echo "host: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"

step micro
"$B" micro --out "$OUT" || echo "!! failed: bench micro"

# The gateway, default shards (one per core = 2), durability fsync.
run idle
run connect-storm
run dm-latency
run groups-durable
fanout
run resume-storm
run slow-consumers
run shards
# Durability buffered, for comparisons with the in-memory peers.
run dm-latency --durability buffered
fanout --durability buffered

# The peers, same loadgen, same loads (no persistence).
for p in node bun; do
  run idle --server "$p"
  run connect-storm --server "$p"
  run dm-latency --server "$p"
  fanout --server "$p"
  run resume-storm --server "$p"
  run slow-consumers --server "$p"
done

# Per core: the server pinned to CPU 0, loadgen to CPU 1; the gateway on
# one shard.
DIR="$OUT/pinned"
mkdir -p "$DIR"
fanout --shards 1 --pin
fanout --shards 1 --pin --durability buffered
run dm-latency --shards 1 --pin
run dm-latency --shards 1 --pin --durability buffered
run small-rooms "${ROOMS[@]}" --shards 1 --pin
for p in node bun; do
  fanout --server "$p" --pin
  run dm-latency --server "$p" --pin
  run small-rooms "${ROOMS[@]}" --server "$p" --pin
done

echo; echo "== $(date -u +%H:%M:%S) done: $OUT"
