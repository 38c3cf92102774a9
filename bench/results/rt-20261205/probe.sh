#!/bin/bash
while [ ! -f /tmp/r38/bun/done ]; do sleep 5; done
O=/tmp/r38/probe; mkdir -p $O
for n in 2 1; do for b in s37i s38b; do
  GWCPU=0 LGCPU=1 BIN=/tmp/bin-$b bash /tmp/r38/shprobe.sh $n pin$n-$b > $O/pin$n-$b.txt 2>&1
  cp /tmp/shprobe-pin$n-$b/perfstat.txt $O/pin$n-$b.perfstat.txt
done; done
echo done > $O/done
