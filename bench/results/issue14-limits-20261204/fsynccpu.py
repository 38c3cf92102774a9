# CPU (user+sys of this process) and wall time per fdatasync of a 200-byte append
import os, time, sys, resource
d='/tmp/fsprobe'; os.makedirs(d, exist_ok=True); fn=os.path.join(d,'c')
fd=os.open(fn, os.O_CREAT|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644); buf=b'x'*200; n=3000
r0=resource.getrusage(resource.RUSAGE_SELF); t0=time.perf_counter()
for i in range(n): os.write(fd, buf)
r1=resource.getrusage(resource.RUSAGE_SELF); t1=time.perf_counter()
for i in range(n): os.write(fd, buf); os.fdatasync(fd)
r2=resource.getrusage(resource.RUSAGE_SELF); t2=time.perf_counter()
w=lambda a,b:(b.ru_utime-a.ru_utime+b.ru_stime-a.ru_stime)
print("write only: %.1f us CPU each; write+fdatasync: %.1f us CPU each (sys %.1f), %.0f us wall each" % (1e6*w(r0,r1)/n, 1e6*w(r1,r2)/n, 1e6*(r2.ru_stime-r1.ru_stime)/n, 1e6*(t2-t1)/n))
os.close(fd); os.unlink(fn)
