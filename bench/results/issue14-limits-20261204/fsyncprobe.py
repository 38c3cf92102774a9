# fdatasync latency of 200-byte appends to a growing file (as a journal grows).
# usage: python3 fsyncprobe.py DIR [N]
import os, time, sys
d = sys.argv[1] if len(sys.argv) > 1 else '/tmp/fsprobe'
os.makedirs(d, exist_ok=True)
fn = os.path.join(d, 'j'); fd = os.open(fn, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_APPEND, 0o644)
lat = []; buf = b'x' * 200
t0 = time.perf_counter()
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 2000):
    os.write(fd, buf); s = time.perf_counter(); os.fdatasync(fd); lat.append(time.perf_counter() - s)
el = time.perf_counter() - t0
lat.sort(); q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3
print("n %d  fdatasync ms: p50 %.2f p90 %.2f p99 %.2f max %.2f  (%.0f/s serial)" % (len(lat), q(.5), q(.9), q(.99), lat[-1] * 1e3, len(lat) / el))
os.close(fd); os.unlink(fn)
