# Sorts the samples of one thread of a `perf script` dump (of `perf record -g`) by the
# syscall they are under (io_uring_enter split into sleeping and what it submitted), or user
# space. usage: perf script -i perf.data > stacks.txt; python3 profile-categories.py stacks.txt [comm]
import collections,sys,re
samples=open(sys.argv[1]).read().split('\n\n')
comm=sys.argv[2] if len(sys.argv)>2 else 'shard-1'
tot=0; c=collections.Counter()
for s in samples:
    lines=[l.strip() for l in s.strip().split('\n') if l.strip()]
    if not lines or not lines[0].startswith(comm): continue
    fr=[l.split()[1].split('+')[0] for l in lines[1:] if len(l.split())>1]
    tot+=1
    st=set(fr)
    if '__do_sys_io_uring_enter' in st:
        if 'io_cqring_wait' in st or 'schedule' in st: k='enter: sleep/switch'
        elif 'io_submit_sqes' in st:
            k='enter: submit other'
            for op in ['io_timeout_remove','io_timeout','io_poll_add','io_poll_remove','io_async_cancel','io_read','io_recv','io_send','io_accept','io_link_timeout']:
                if any(f.startswith(op) for f in fr): k='enter: submit '+op; break
        elif 'io_cqring_wait' not in st and any('task_work' in f or 'tw' in f for f in fr): k='enter: task work'
        else: k='enter: other'
        c[k]+=1
    elif '__x64_sys_membarrier' in st: c['membarrier']+=1
    elif '__x64_sys_sendto' in st or '__x64_sys_sendmsg' in st: c['send']+=1
    elif '__x64_sys_recvfrom' in st: c['recv']+=1
    elif '__x64_sys_futex' in st: c['futex']+=1
    elif 'finish_task_switch.isra.0' in st: c['switch (irq/other)']+=1
    elif any(f.startswith('__x64_sys') for f in fr): c['other syscall '+[f for f in fr if f.startswith('__x64_sys')][0]]+=1
    elif len(lines)>1 and lines[1].split()[-1].find('kernel')>=0: c['kernel other']+=1
    else:
        top=fr[0] if fr else '?'
        k='user: glommio' if any('glommio' in f for f in fr[:2]) else 'user: other'
        c[k]+=1
for k,v in c.most_common(40): print("%6.2f%% %s"%(100*v/tot,k))
print(tot,'samples')
