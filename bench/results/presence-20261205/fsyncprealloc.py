# CPU (user+sys of this process) and wall time per fdatasync after a 200-byte write, 3,000 in a
# row, five rounds: appending to a growing file; writing into a file made 64 MiB long with
# ftruncate (sparse: what fjall's journal does, `set_len`); with posix_fallocate; and into a
# zero-filled 8 MiB file. usage: [DIR=/path/on/the/data/disk] python3 fsyncprealloc.py
import os, time, resource, statistics
d=os.environ.get('DIR', '/tmp/fsprobe'); os.makedirs(d, exist_ok=True)
n=3000; buf=b'x'*200; S=64*1024*1024
w=lambda a,b:(b.ru_utime-a.ru_utime+b.ru_stime-a.ru_stime)
res={}
def run(name, prep, wr):
    fn=os.path.join(d,name); fd=os.open(fn, os.O_CREAT|os.O_RDWR|os.O_TRUNC, 0o644); prep(fd); os.fsync(fd)
    r1=resource.getrusage(resource.RUSAGE_SELF); t1=time.perf_counter()
    for i in range(n): wr(fd,i); os.fdatasync(fd)
    r2=resource.getrusage(resource.RUSAGE_SELF); t2=time.perf_counter()
    res.setdefault(name,[]).append((1e6*w(r1,r2)/n, 1e6*(t2-t1)/n))
    os.close(fd); os.unlink(fn)
def zf(fd):
    z=b'\0'*(1<<20)
    for i in range(8): os.write(fd,z)
for rep in range(5):
    run('append', lambda fd: None, lambda fd,i: os.write(fd, buf))
    run('sparse', lambda fd: os.ftruncate(fd, S), lambda fd,i: os.pwrite(fd, buf, i*200))
    run('fallocate', lambda fd: os.posix_fallocate(fd, 0, S), lambda fd,i: os.pwrite(fd, buf, i*200))
    run('zerofilled', zf, lambda fd,i: os.pwrite(fd, buf, i*200))
for k,v in res.items():
    print("%-11s CPU us median %.1f  (%s)  wall us median %.0f" % (k, statistics.median(x[0] for x in v), " ".join("%.0f"%x[0] for x in v), statistics.median(x[1] for x in v)))
