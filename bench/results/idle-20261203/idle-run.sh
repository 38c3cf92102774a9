#!/bin/bash
# One by-hand idle run: gateway pinned to CPU 0 (1 shard), loadgen pinned to CPU 1.
# Records nstat deltas, a snapshot at t=SNAP s (kernel-side only), loadgen JSON.
# usage: [GWARGS="--config F.toml"] idle-run.sh BIN_DIR OUT_DIR [PORT] [SNAP]
# BIN_DIR holds release `gateway` and `loadgen`. Needs taskset, ss, nstat
# (iproute2), curl and bc. Writes OUT_DIR/{gw.log,lg.json,snap.txt,
# before.txt,after.txt,metrics.txt}; after.txt's nstat lines are absolute
# counters (since boot), snap.txt's too. Used for the 2026-12-03 section of
# docs/benchmarks.md ("The idle stall was a shard panic").
B=$1; O=$2; PORT=${3:-19300}; SNAP=${4:-14}
mkdir -p $O; rm -rf $O/data; 
nstat -n >/dev/null
taskset -c 0 $B/gateway --listen 127.0.0.1:$PORT --data-dir $O/data --shards 1 $GWARGS > $O/gw.log 2>&1 &
GW=$!
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PORT/readyz && break; sleep 0.1; done
grep -E "VmRSS|VmHWM" /proc/$GW/status > $O/before.txt
nstat -n >/dev/null
T0=$(date +%s.%N)
taskset -c 1 $B/loadgen idle --target ws://127.0.0.1:$PORT/ws --connections 19000 --rate 1 --duration 10s --ramp 5000 --json --quiet --procs 2 > $O/lg.json 2> $O/lg.err &
LG=$!
sleep $SNAP
{
  echo "== t=$SNAP"; ss -ltn "sport = :$PORT"
  echo "established: $(ss -tnH state established "sport = :$PORT" | wc -l)"
  echo "syn-recv: $(ss -tnH state syn-recv "sport = :$PORT" | wc -l)"
  for t in /proc/$GW/task/*; do echo "$(cat $t/comm) $(awk '{print $3, $14, $15}' $t/stat) $(cat $t/wchan)"; done
  grep -E "VmRSS|VmHWM" /proc/$GW/status
  nstat -saz TcpExtListenOverflows TcpExtListenDrops TcpExtTCPReqQFullDrop TcpExtSyncookiesSent TcpExtTCPTimeouts TcpRetransSegs
} > $O/snap.txt 2>&1
wait $LG
T1=$(date +%s.%N)
echo "loadgen wall $(echo "$T1 - $T0" | bc)" > $O/after.txt
nstat -az TcpExtListenOverflows TcpExtListenDrops TcpExtTCPReqQFullDrop TcpExtSyncookiesSent TcpExtTCPTimeouts TcpRetransSegs >> $O/after.txt
grep -E "VmRSS|VmHWM" /proc/$GW/status >> $O/after.txt
awk '{print "gw cpu ticks", $14, $15}' /proc/$GW/stat >> $O/after.txt
curl -s http://127.0.0.1:$PORT/metrics > $O/metrics.txt
kill $GW; wait $GW 2>/dev/null
