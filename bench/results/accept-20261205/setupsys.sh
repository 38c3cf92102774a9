#!/bin/bash
S=$1; TAG=$2; B=/tmp/bin-slot; D=/tmp/setup-$TAG; rm -rf $D; mkdir -p $D/data; PORT=18953
if [ $S = bun ]; then taskset -c 0 bench/peers/node_modules/.bin/bun bench/peers/bun-server.js $PORT > $D/srv.log 2>&1 &
else taskset -c 0 ${GW:-$B}/gateway --listen 127.0.0.1:$PORT --data-dir $D/data --shards 1 > $D/srv.log 2>&1 & fi
P=$!; sleep 1.5
perf stat -x, -e 'raw_syscalls:sys_enter' -e 'syscalls:sys_enter_sendto,syscalls:sys_enter_membarrier,syscalls:sys_enter_eventfd2,syscalls:sys_enter_fcntl,syscalls:sys_enter_accept,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_futex,syscalls:sys_enter_accept4,syscalls:sys_enter_dup,syscalls:sys_enter_close,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_write,syscalls:sys_enter_read,syscalls:sys_enter_setsockopt,syscalls:sys_enter_getsockopt,syscalls:sys_enter_fdatasync,syscalls:sys_enter_clock_nanosleep,sched:sched_switch' -p $P -o $D/sys.csv > /dev/null 2>&1 &
PP=$!
taskset -c 1 $B/loadgen room --connections 10000 --senders 5 --target ws://127.0.0.1:$PORT/ws --rate 0 --duration 1s --ramp 5000 --json --quiet > $D/lg.json 2>$D/lg.err
kill -INT $PP; wait $PP; kill $P; wait $P 2>/dev/null
grep -v "^#" $D/sys.csv | awk -F, 'NF>2 {printf "%s %s\n", $3, $1}'
