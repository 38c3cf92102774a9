#!/bin/bash
# Small rooms, 1 and 2 shards pinned (gateway CPU 0, loadgen CPU 1), s37i and s38b:
# CPU per message by thread and syscalls per message over 4 s, with the probe of stop 37.
P=$(cd "$(dirname "$0")" && pwd)/../wake-20261205/probe/shprobe.sh
while [ ! -f /tmp/r38/bun/done ]; do sleep 5; done
O=/tmp/r38/probe; mkdir -p $O
for n in 2 1; do for b in s37i s38b; do
  GWCPU=0 LGCPU=1 BIN=/tmp/bin-$b bash $P $n pin$n-$b > $O/pin$n-$b.txt 2>&1
  cp /tmp/shprobe-pin$n-$b/perfstat.txt $O/pin$n-$b.perfstat.txt
done; done
echo done > $O/done
