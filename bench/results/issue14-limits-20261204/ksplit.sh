#!/bin/bash
# User and kernel CPU per delivery of a pinned server (CPU 0) under loadgen
# (CPU 1): the server's utime and stime (/proc, all threads) over 4 s in the
# middle of a 14 s run, divided by the deliveries offered in that window
# (RATE x PER x seconds; check ok=True: every delivery arrived). WIN=seconds
# changes the window (default 4); PERF_ARGS the perf record options.
# Also printed: loadgen's CPU and each CPU's busy time (/proc/stat, softirqs
# included whoever they ran for) per delivery. ACKS=1 counts, per CPU, the
# segments the server's sockets received (tcp:tcp_probe filtered on the
# server's port: loadgen's ACKs and the senders' frames) instead of sleeping.
# Run from the repository root after `bench peers setup`.
# usage: [BIN=dir] [PER=deliveries per message] [LOADGEN_ARGS=...] [PERF=1]
#        ksplit.sh gateway|bun RATE TAG      -> /tmp/ksplit-TAG/
# e.g.   ksplit.sh bun 3000 bun1             (small rooms, PER=10)
#        PER=2 LOADGEN_ARGS="dm --connections 1000" ksplit.sh gateway 2000 dm1
#        PER=10000 LOADGEN_ARGS="room --connections 10000 --senders 5" ksplit.sh gateway 10 r1
S=$1; RATE=$2; TAG=$3; B=${BIN:-target/release}
LA=${LOADGEN_ARGS:-room --connections 2000 --room-size 10 --senders 2}
PER=${PER:-10}
D=/tmp/ksplit-$TAG; rm -rf $D; mkdir -p $D/data; PORT=18951
if [ $S = bun ]; then
  taskset -c 0 bench/peers/node_modules/.bin/bun bench/peers/bun-server.js $PORT > $D/srv.log 2>&1 &
else
  taskset -c 0 $B/gateway --listen 127.0.0.1:$PORT --data-dir $D/data --shards 1 $EXTRA > $D/srv.log 2>&1 &
fi
P=$!; sleep 1.5
taskset -c 1 $B/loadgen $LA --target ws://127.0.0.1:$PORT/ws --rate $RATE --duration $((10 + ${WIN:-4}))s --ramp 5000 --json --quiet > $D/lg.json 2>$D/lg.err &
LG=$!; sleep 6
st() { cat /proc/$P/task/*/stat | awk '{u+=$14; s+=$15} END {print u, s}'; }
lgst() { cat /proc/$LG/task/*/stat 2>/dev/null | awk '{u+=$14; s+=$15} END {print u+s}'; }
cpus() { awk '/^cpu[01] / {print $2+$3+$4+$7+$8}' /proc/stat | paste -sd' '; }
a=($(st)); la=$(lgst); ca=($(cpus)); t1=$(date +%s.%N); cat /proc/net/snmp /proc/net/netstat > $D/net1.txt
if [ -n "$PERF" ]; then perf record ${PERF_ARGS:--F 1999 -g} -p $P -o $D/perf.data sleep ${WIN:-4} >/dev/null 2>&1
elif [ -n "$ACKS" ]; then perf stat -a -A -x, -e tcp:tcp_probe --filter "sport == $PORT" -o $D/acks.csv sleep ${WIN:-4} >/dev/null 2>&1
elif [ -n "$PSTAT" ]; then perf stat -x, -e instructions:u,cycles:u,instructions:k,cycles:k -p $P -o $D/stat.csv sleep ${WIN:-4} >/dev/null 2>&1
else sleep ${WIN:-4}; fi
b=($(st)); lb=$(lgst); cb=($(cpus)); t2=$(date +%s.%N); cat /proc/net/snmp /proc/net/netstat > $D/net2.txt
echo "$la $lb ${ca[*]} ${cb[*]}" > $D/cpus.txt
wait $LG; kill $P; wait $P 2>/dev/null
python3 - "$D" "$RATE" "$PER" "${a[@]}" "${b[@]}" "$t1" "$t2" "$S" <<'PY'
import sys,json
D,rate,per,u1,s1,u2,s2,t1,t2,S=sys.argv[1:]
w=float(t2)-float(t1); deliv=float(rate)*float(per)*w
u=(int(u2)-int(u1))/100; s=(int(s2)-int(s1))/100
j=json.load(open(D+'/lg.json'))
import os
extra=""
if os.path.exists(D+'/stat.csv'):
    for l in open(D+'/stat.csv'):
        f=l.strip().split(',')
        if len(f)>2 and f[0].replace('.','').isdigit(): extra+=" %s/deliv %.0f" % (f[2], float(f[0])/deliv)
def net(f):
    d={}; lines=open(f).read().split('\n')
    for h,v in zip(lines[0::2],lines[1::2]):
        hs=h.split(); vs=v.split()
        if hs and vs and hs[0]==vs[0]:
            for k,x in zip(hs[1:],vs[1:]): d[hs[0]+k]=int(x)
    return d
if os.path.exists(D+'/net1.txt') and os.path.exists(D+'/net2.txt'):
    n1,n2=net(D+'/net1.txt'),net(D+'/net2.txt')
    dd=lambda k: (n2.get(k,0)-n1.get(k,0))/w
    c=open(D+'/cpus.txt').read().split()
    if len(c)==6:
        la,lb,c0a,c1a,c0b,c1b=map(int,c)
        extra+=" | per delivery: loadgen %.2f us, CPU0 %.2f us, CPU1 %.2f us" % (1e4*(lb-la)/deliv, 1e4*(c0b-c0a)/deliv, 1e4*(c1b-c1a)/deliv)
    if os.path.exists(D+'/acks.csv'):
        for l in open(D+'/acks.csv'):
            f=l.strip().split(',')
            if len(f)>3 and f[0].startswith('CPU'): extra+=" | server-socket segs/s %s %.0f" % (f[0], float(f[1])/w)
    extra+=" | host/s: OutSegs %.0f DelayedACKs %.0f PureAcks %.0f HPAcks %.0f HPHits %.0f" % (dd('Tcp:OutSegs'), dd('TcpExt:DelayedACKs'), dd('TcpExt:TCPPureAcks'), dd('TcpExt:TCPHPAcks'), dd('TcpExt:TCPHPHits'))
print("%s %s rate %s: CPU %.3f/s (user %.3f, sys %.3f) -> per delivery user %.2f us, kernel %.2f us, total %.2f us; p50 %.2f p99 %.2f ms ok %s" % (D,S,rate,(u+s)/w,u/w,s/w,1e6*u/deliv,1e6*s/deliv,1e6*(u+s)/deliv,j['latency_us']['p50']/1e3,j['latency_us']['p99']/1e3,j['ok'])+extra)
PY
