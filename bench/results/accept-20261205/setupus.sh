#!/bin/bash
# server CPU over a loadgen room run with (almost) no messages: the cost of
# 10,000 connects + joins (+ drain) — what the bench's per-run CPU includes besides the send phase.
S=$1; TAG=$2; SS=$1; TT=$2; B=${B:-/tmp/bin-slot}; D=/tmp/setup-$TAG; rm -rf $D; mkdir -p $D/data; PORT=18953
if [ $S = bun ]; then taskset -c 0 bench/peers/node_modules/.bin/bun bench/peers/bun-server.js $PORT > $D/srv.log 2>&1 &
else taskset -c 0 ${GW:-$B}/gateway --listen 127.0.0.1:$PORT --data-dir $D/data --shards 1 > $D/srv.log 2>&1 & fi
P=$!; sleep 1.5
st() { cat /proc/$P/task/*/stat | awk "{u+=\$14; s+=\$15} END {print u, s}"; }
a=$(st)
taskset -c 1 $B/loadgen room --connections 10000 --senders 5 --target ws://127.0.0.1:$PORT/ws --rate 0 --duration 1s --ramp 5000 --json --quiet > $D/lg.json 2>$D/lg.err
b=$(st); kill $P; wait $P 2>/dev/null
set -- $a $b; echo "$SS $TT setup+join CPU user $(( $3 - $1 )) sys $(( $4 - $2 )) us per connection; delivered $(python3 -c "import json;print(json.load(open('$D/lg.json'))['delivered'])")"
