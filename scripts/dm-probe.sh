#!/bin/bash
# Where a DM's CPU goes (docs/benchmarks.md, "Where a durable DM's CPU goes,
# layer by layer"): starts the gateway (--shards 1) pinned to CPU 0 and
# `loadgen dm` (1,000 connections, RATE msgs/s, 14 s) pinned to CPU 1; over
# 4 s in the middle of the run it takes the gateway's CPU per thread
# (/proc), its syscalls per message (perf stat) and its deliveries
# (/metrics), and prints deliveries per gateway CPU-second, loadgen's
# latency and those counts. PERF=1 also records `perf record -g` for the 4 s.
# LOADGEN_ARGS replaces the workload (default "dm --connections 1000"; e.g.
# "room --connections 2000 --room-size 10 --senders 2" for small rooms).
# Needs perf, curl and python3; writes /tmp/dmprobe-TAG/.
# usage: BIN=<dir with gateway and loadgen> [GWENV="VAR=1 ..."] scripts/dm-probe.sh TAG [RATE] [gateway args...]
# e.g.   BIN=target/release scripts/dm-probe.sh fsync 2000
#        BIN=target/release scripts/dm-probe.sh buffered 2000 --durability buffered
TAG=$1; RATE=${2:-2000}; shift; [ $# -gt 0 ] && shift; EXTRA="$@"
BIN=${BIN:-target/release}
LOADGEN_ARGS=${LOADGEN_ARGS:-dm --connections 1000}
D=/tmp/dmprobe-$TAG; rm -rf $D; mkdir -p $D/data
PORT=18941
taskset -c 0 env $GWENV $BIN/gateway --listen 127.0.0.1:$PORT --data-dir $D/data --shards 1 $EXTRA > $D/gw.log 2>&1 &
GW=$!
sleep 1
if ! kill -0 $GW 2>/dev/null; then echo "gateway did not start:"; cat $D/gw.log; exit 1; fi
taskset -c 1 $BIN/loadgen $LOADGEN_ARGS --target ws://127.0.0.1:$PORT/ws --rate $RATE --duration 14s --ramp 5000 --json --quiet > $D/lg.json 2>$D/lg.err &
LG=$!
sleep 6
w1=$(date +%s.%N); m1=$(curl -s 127.0.0.1:$PORT/metrics)
for t in /proc/$GW/task/*; do echo "$(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done > $D/t1
perf stat -e syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_fdatasync,syscalls:sys_enter_futex,syscalls:sys_enter_sched_yield,syscalls:sys_enter_membarrier,syscalls:sys_enter_pwrite64,syscalls:sys_enter_writev,context-switches -p $GW -x, -o $D/perfstat.txt sleep 4 &
PS=$!
if [ -n "$PERF" ]; then perf record -F 1999 -g -p $GW -o $D/perf.data sleep 4 2>/dev/null >/dev/null; fi
wait $PS
m2=$(curl -s 127.0.0.1:$PORT/metrics); w2=$(date +%s.%N)
for t in /proc/$GW/task/*; do echo "$(cat $t/comm) $(awk '{print $14+$15}' $t/stat)"; done > $D/t2
wait $LG
kill $GW; wait $GW 2>/dev/null
d1=$(echo "$m1" | awk '/^gateway_deliveries_total/{print $2}'); d2=$(echo "$m2" | awk '/^gateway_deliveries_total/{print $2}')
echo "deliveries $((d2-d1)) window_s $(python3 -c "print($w2 - $w1)")" > $D/summary
python3 - $D $RATE <<'PY'
import json,sys,collections
D=sys.argv[1]
def th(f):
    c=collections.Counter()
    for l in open(f):
        n,v=l.rsplit(' ',1); c[n]+=int(v)
    return c
t1,t2=th(D+'/t1'),th(D+'/t2')
summary=open(D+'/summary').read().split()
dl=int(summary[1])
# The window between the two /metrics reads is 4 s plus perf's start-up and
# exit: per-second figures divide by it; syscall counts are perf's own 4 s.
win=float(summary[3])
msgs=int(sys.argv[2])*4
cpu={k:(t2[k]-t1[k])/100 for k in t2}
tot=sum(cpu.values())
d=json.load(open(D+'/lg.json'))
print("%s: window %.2f s, deliveries/s %.0f, gateway CPU-s/s %.3f, deliveries per CPU-s %.0f, CPU per message %.0f us, p50 %.2f p99 %.2f ms, ok %s" % (D, win, dl/win, tot/win, dl/max(tot,1e-9), 1e6*tot/win/int(sys.argv[2]), d['latency_us']['p50']/1e3, d['latency_us']['p99']/1e3, d['ok']))
for k,v in sorted(cpu.items(), key=lambda x:-x[1]):
    if v>0: print("   thread %-20s %.3f CPU-s/s (%.0f%%)" % (k, v/win, 100*v/max(tot,1e-9)))
for l in open(D+'/perfstat.txt'):
    p=l.strip().split(',')
    if len(p)>2 and p[0].replace('.','').isdigit():
        print("   %-40s %8.2f per message" % (p[2], float(p[0])/max(msgs,1)))
PY
