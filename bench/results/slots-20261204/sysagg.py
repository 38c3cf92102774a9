import re,collections,sys
for fn in sys.argv[1:]:
    samples=open(fn).read().split('\n\n')
    agg=collections.Counter(); tot=0
    for s in samples:
        lines=[l.strip() for l in s.strip().split('\n')]
        if len(lines)<2: continue
        tot+=1
        frames=[l.split(None,1)[1] if ' ' in l else l for l in lines[1:]]
        key='user'
        for f in frames:
            m=re.match(r'(__x64_sys_\w+|__do_sys_\w+|asm_sysvec_\w+|asm_common_interrupt|irqentry_exit_to_user_mode|exit_to_user_mode_loop)',f)
            if m: key=m.group(1)
        for f in reversed(frames):
            m=re.match(r'(__x64_sys_\w+|__do_sys_\w+)',f)
            if m: key=m.group(1); break
        agg[key]+=1
    print(fn, tot, "samples (ms at 999 Hz)")
    for k,v in agg.most_common(14): print(f"  {v:5d} {k}")
