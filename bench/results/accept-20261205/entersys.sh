#!/bin/bash
# io_uring_enter calls during 10,000 connects+joins, by ring fd / to_submit / min_complete / flags
S=$1; TAG=$2; B=${B:-/tmp/bin-slot}; D=/tmp/setup-$TAG; rm -rf $D; mkdir -p $D/data; PORT=18953
taskset -c 0 ${GW:-$B}/gateway --listen 127.0.0.1:$PORT --data-dir $D/data --shards 1 > $D/srv.log 2>&1 &
P=$!; sleep 1.5
perf record -e syscalls:sys_enter_io_uring_enter -p $P -o $D/perf.data > /dev/null 2>&1 &
PP=$!
taskset -c 1 $B/loadgen room --connections 10000 --senders 5 --target ws://127.0.0.1:$PORT/ws --rate 0 --duration 1s --ramp 5000 --json --quiet > $D/lg.json 2>$D/lg.err
kill -INT $PP; wait $PP; kill $P; wait $P 2>/dev/null
perf script -i $D/perf.data 2>/dev/null | sed -E 's/.*fd: (0x[0-9a-f]+), to_submit: (0x[0-9a-f]+), min_complete: (0x[0-9a-f]+), flags: (0x[0-9a-f]+).*/fd=\1 sub=\2 min=\3 flags=\4/' | awk '{k=$1" "($2=="sub=0x00000000"?"sub=0":"sub>0")" "$3" "$4; c[k]++} END {for (k in c) print c[k], k}' | sort -rn | head -20
