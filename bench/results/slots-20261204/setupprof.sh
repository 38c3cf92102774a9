#!/bin/bash
S=$1; TAG=$2; B=/tmp/bin-slot; D=/tmp/setup-$TAG; rm -rf $D; mkdir -p $D/data; PORT=18953
if [ $S = bun ]; then taskset -c 0 bench/peers/node_modules/.bin/bun bench/peers/bun-server.js $PORT > $D/srv.log 2>&1 &
else taskset -c 0 ${GW:-$B}/gateway --listen 127.0.0.1:$PORT --data-dir $D/data --shards 1 > $D/srv.log 2>&1 & fi
P=$!; sleep 1.5
perf record ${PERF_ARGS:--F 999 -g} -p $P -o $D/perf.data > /dev/null 2>&1 &
PP=$!
taskset -c 1 $B/loadgen room --connections 10000 --senders 5 --target ws://127.0.0.1:$PORT/ws --rate 0 --duration 1s --ramp 5000 --json --quiet > $D/lg.json 2>$D/lg.err
kill -INT $PP; wait $PP; kill $P; wait $P 2>/dev/null
