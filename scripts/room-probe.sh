#!/bin/bash
# Counts what the gateway writes in a 10,000-member room (docs/benchmarks.md,
# "Big rooms: coalescing under load"): starts the gateway pinned to CPU 0 and
# loadgen pinned to CPU 1, and for 4 s in the middle of the run counts the
# gateway's sendto calls (perf stat) against its deliveries; prints latency,
# commits/s, sends/s, frames per write and the gateway's CPU.
# usage: BIN=dir scripts/room-probe.sh RATE FLUSH_TICK_US [perf]   (perf: also perf record -g)
RATE=$1; TICK=$2; PERF=$3
rm -rf /tmp/room-gwdata && mkdir -p /tmp/room-gwdata
printf "flush_tick_us = $TICK\n" > /tmp/room-probe.toml
taskset -c 0 ${BIN:-target/release}/gateway --listen 127.0.0.1:18931 --data-dir /tmp/room-gwdata --shards 1 --config /tmp/room-probe.toml > /tmp/room-gw.log 2>&1 &
GW=$!
sleep 1
taskset -c 1 ${BIN:-target/release}/loadgen room --target ws://127.0.0.1:18931/ws --connections 10000 --rate $RATE --duration 10s --ramp 5000 --senders 5 --json --quiet > /tmp/room-lg.json 2>/tmp/room-lg.err &
LG=$!
sleep 5
m1=$(curl -s 127.0.0.1:18931/metrics); t1=$(awk '{print $14+$15}' /proc/$GW/stat)
perf stat -e syscalls:sys_enter_sendto,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom -p $GW -x, -o /tmp/room-perfstat.txt sleep 4 &
PS=$!
if [ "$PERF" = perf ]; then perf record -g -p $GW -o /tmp/room-perf-$RATE-$TICK.data sleep 4 2>/dev/null >/dev/null; fi
wait $PS
m2=$(curl -s 127.0.0.1:18931/metrics); t2=$(awk '{print $14+$15}' /proc/$GW/stat)
wait $LG
kill $GW; wait $GW 2>/dev/null
c1=$(echo "$m1" | awk '/^gateway_commits_total/{print $2}'); c2=$(echo "$m2" | awk '/^gateway_commits_total/{print $2}')
d1=$(echo "$m1" | awk '/^gateway_deliveries_total/{print $2}'); d2=$(echo "$m2" | awk '/^gateway_deliveries_total/{print $2}')
sends=$(grep sendto /tmp/room-perfstat.txt | cut -d, -f1); iou=$(grep io_uring /tmp/room-perfstat.txt | cut -d, -f1); rec=$(grep recvfrom /tmp/room-perfstat.txt | cut -d, -f1)
python3 -c "
import json; d=json.load(open('/tmp/room-lg.json'))
dl=($d2-$d1); s=$sends
print('rate $RATE tick $TICK: p50 %.0f ms p99 %.0f ms ack p99 %.0f ms | commits/s %.1f | deliveries/s %.0f, sendto/s %.0f, frames per write %.1f, io_uring_enter/s %.0f, recvfrom/s %.0f | gw cpu %.0f%% | ok %s' % (d['latency_us']['p50']/1e3, d['latency_us']['p99']/1e3, d['ack_latency_us']['p99']/1e3, ($c2-$c1)/4, dl/4, s/4, dl/max(s,1), $iou/4, $rec/4, ($t2-$t1)/4, d['ok']))
"
