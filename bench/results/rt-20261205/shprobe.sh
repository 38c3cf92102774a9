#!/bin/bash
# small rooms, gateway --shards N unpinned, loadgen unpinned; syscalls and CPU per message over 4 s
N=$1; TAG=$2; BIN=${BIN:-/tmp/bin-s36b}; D=/tmp/shprobe-$TAG; rm -rf $D; mkdir -p $D/data; PORT=18961
taskset -c ${GWCPU:-0-1} env $GWENV $BIN/gateway --listen 127.0.0.1:$PORT --data-dir $D/data --shards $N > $D/gw.log 2>&1 &
GW=$!; sleep 1
taskset -c ${LGCPU:-0-1} $BIN/loadgen room --connections 2000 --room-size 10 --senders 2 --target ws://127.0.0.1:$PORT/ws --rate 2000 --duration 14s --ramp 5000 --json --quiet > $D/lg.json 2>$D/lg.err &
LG=$!; sleep 6
for t in /proc/$GW/task/*; do echo "$(cat $t/comm) $(awk '{print $14, $15}' $t/stat)"; done > $D/t1
perf stat -e syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_fdatasync,syscalls:sys_enter_futex,syscalls:sys_enter_membarrier,context-switches,cpu-migrations -p $GW -x, -o $D/perfstat.txt sleep 4
for t in /proc/$GW/task/*; do echo "$(cat $t/comm) $(awk '{print $14, $15}' $t/stat)"; done > $D/t2
wait $LG; kill $GW; wait $GW 2>/dev/null
python3 - $D <<'PY'
import sys,collections
D=sys.argv[1]
def th(f):
    c=collections.defaultdict(lambda:[0,0])
    for l in open(f):
        p=l.split(); n=' '.join(p[:-2]); c[n][0]+=int(p[-2]); c[n][1]+=int(p[-1])
    return c
a,b=th(D+'/t1'),th(D+'/t2')
msgs=2000*4
tot=0
for k in b:
    u=b[k][0]-a[k][0]; s=b[k][1]-a[k][1]; tot+=u+s
    if u+s>0: print("  %-18s user %5.1f sys %5.1f us/msg" % (k, u*1e4/msgs, s*1e4/msgs))
print("  total %.1f us/msg" % (tot*1e4/msgs))
for l in open(D+'/perfstat.txt'):
    p=l.strip().split(',')
    if len(p)>2 and p[0].replace('.','').isdigit(): print("  %-40s %.2f /msg" % (p[2], float(p[0])/msgs))
PY
