#!/bin/bash
# usage: prof.sh OUT RATE ROUNDS names... (bun = Bun server)
OUT=$1; RATE=$2; R=$3; shift 3
cd /work/main
for i in $(seq 1 $R); do for b in "$@"; do
  if [ $b = bun ]; then S=bun; B=/tmp/bin-take; else S=gateway; B=/tmp/bin-$b; fi
  BIN=$B PERF=1 PERF_ARGS="-F 1999" PER=${PER:-10000} LOADGEN_ARGS="${LA:-room --connections 10000 --senders 5}" bench/results/issue14-limits-20261204/ksplit.sh $S $RATE pf-$b-$i > /tmp/pf-line 2>&1
  line=$(tail -1 /tmp/pf-line)
  share=$(perf report -i /tmp/ksplit-pf-$b-$i/perf.data --no-children --sort dso -g none 2>/dev/null | grep -v "^#" | grep -v "^$" | awk '/kernel.kallsyms/ {k=$1} !/kernel.kallsyms/ {u+=$1} END {printf "kernel %s user %.2f%%", k, u}')
  echo "$b $i $share | $line" >> $OUT
done; done
echo done >> $OUT
