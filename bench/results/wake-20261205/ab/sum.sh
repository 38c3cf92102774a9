cd ${O:-.}
for sc in small-rooms dm-latency; do for b in s37a s37b; do for s in 1 2; do
  printf "%-12s %s s%s:" $sc $b $s
  for i in 1 2 3 4 5 6 7; do f=$sc-$b-s$s-$i.md; [ -f $f ] && awk -F'|' 'NR==3{printf " %s (p99 %s)", $9, $14}' $f; done; echo
done; done; done
