#!/bin/bash
# The alternating 10,000-member-room ladders of this directory:
#   ladder.sh OUT "ROUNDS" "SYSTEMS" STEPS LOADGEN_DIR
# SYSTEMS: bun, or the name of a /tmp/bin-<name> directory holding a gateway.
# Rounds 1-3: ladder.sh . "1 2 3" "s10 lg3 bun" 120,160,200,240,280,320 /tmp/bin-lg3
# Rounds 4-6: ladder.sh . "4 5 6" "lg3 bun"     120,160,200,240,280,320 /tmp/bin-lg3
# Later:      ladder.sh . "7 8"   "lg4 bun"     320,400,480,560,640,720,800 /tmp/bin-lg4
OUT=$1; ROUNDS=$2; SYSTEMS=$3; STEPS=$4; LG=$5
for r in $ROUNDS; do
  for v in $SYSTEMS; do
    if [ "$v" = bun ]; then server=(--server bun); else server=(--shards 1 --gateway-bin /tmp/bin-$v/gateway); fi
    "$LG/bench" run room-fanout --pin "${server[@]}" --stop-p99-ms 1000 --steps "$STEPS" \
      --loadgen-bin "$LG/loadgen" --out "$OUT/$v-$r" > "$OUT/$v-$r.log" 2>&1
  done
done
