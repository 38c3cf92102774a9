#!/bin/bash
# RSS split (anon/file) growth over 19,000 idle connections, default shards
B=$1; TAG=$2; D=/tmp/idlemem-$TAG; rm -rf $D; mkdir -p $D/data; PORT=18955
$B/gateway --listen 127.0.0.1:$PORT --data-dir $D/data > $D/srv.log 2>&1 &
P=$!; sleep 1.5
r() { grep -E "^(VmRSS|RssAnon|RssFile)" /proc/$P/status | awk '{printf "%s ", $2}'; }
a=($(r))
/tmp/bin-slot/loadgen idle --connections 19000 --target ws://127.0.0.1:$PORT/ws --duration 3s --ramp 5000 --json --quiet > $D/lg.json 2>$D/lg.err &
L=$!; sleep 7; b=($(r)); wait $L; kill $P; wait $P 2>/dev/null
echo "$TAG rss ${a[0]}->${b[0]} (+$(( (b[0]-a[0])*1024/19000 )) B/conn) anon ${a[1]}->${b[1]} (+$(( (b[1]-a[1])*1024/19000 )) B/conn) file ${a[2]}->${b[2]} (+$(( (b[2]-a[2])*1024/19000 )) B/conn)"
