#!/bin/bash
cd /tmp/lad4
for r in 4 5 6; do
  for v in lg3 bun; do
    if [ $v = bun ]; then
      /tmp/bin-lg3/bench run room-fanout --pin --server bun --stop-p99-ms 1000 --steps 120,160,200,240,280,320 --loadgen-bin /tmp/bin-lg3/loadgen --out /tmp/lad4/$v-$r > /tmp/lad4/$v-$r.log 2>&1
    else
      /tmp/bin-lg3/bench run room-fanout --pin --shards 1 --stop-p99-ms 1000 --steps 120,160,200,240,280,320 --gateway-bin /tmp/bin-$v/gateway --loadgen-bin /tmp/bin-lg3/loadgen --out /tmp/lad4/$v-$r > /tmp/lad4/$v-$r.log 2>&1
    fi
  done
done
echo done > /tmp/lad4/DONE
