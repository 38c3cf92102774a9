#!/bin/bash
# The docs/plots room charts from this suite: p99 by `bench plot-results`, deliveries per CPU-s by `bench plot` of a spec built from the same files.
set -e
B=../../../target/release/bench  # run from bench/results/suite-20261205
declare -A G
G[room-10k-percore]="pinned/room-fanout-1796432162.json pinned/room-fanout-1796432340.json pinned/room-fanout-bun-1796432760.json pinned/room-fanout-node-1796432585.json"
G[room-1k-percore]="pinned/room-fanout-1796432253.json pinned/room-fanout-1796432432.json pinned/room-fanout-bun-1796432851.json pinned/room-fanout-node-1796432636.json"
G[room-10k-total]="room-fanout-1796431239.json room-fanout-1796431507.json room-fanout-bun-1796431922.json room-fanout-node-1796431706.json"
G[room-1k-total]="room-fanout-1796431330.json room-fanout-1796431598.json room-fanout-bun-1796432015.json room-fanout-node-1796431759.json"
for k in "${!G[@]}"; do
  $B plot-results --out /tmp/pl/$k ${G[$k]} > /dev/null 2>&1
  cp /tmp/pl/$k/latency-p99.svg ../../../docs/plots/$k-p99.svg
  python3 - $k ${G[$k]} <<'PY'
import json,sys
k=sys.argv[1]; files=sys.argv[2:]
lat=json.load(open(f'/tmp/pl/{k}/latency-p99.json'))
names=[s['name'] for s in lat['series']]
series=[]
for name,f in zip(names,files):
    j=json.load(open(f))
    pts=[[r['spec']['rate'], r['figures']['deliveries_per_cpu_s']] for r in j['runs']]
    series.append({'name':name,'points':pts})
spec={'title':'room-fanout: deliveries per server CPU-second vs offered rate (2026-12-05 suite)','x_label':'offered publish rate (messages/s)','y_label':'deliveries per server CPU-s','log_y':True,'series':series}
json.dump(spec,open(f'/tmp/pl/{k}/cpu.json','w'))
PY
  $B plot --out ../../../docs/plots/$k-cpu.svg /tmp/pl/$k/cpu.json > /dev/null 2>&1
done
