import sys, glob, re, statistics, os
d=sys.argv[1]
rows={}
for f in sorted(glob.glob(d+'/*.log')):
    name=os.path.basename(f)[:-4]
    m=re.match(r'(\w+)-r(\d+)-(\d+)',name)
    if not m: continue
    s,rate,i=m.groups()
    lines=[l for l in open(f) if l.startswith('| room-fanout') or l.startswith('| connect-storm')]
    if not lines: continue
    c=[x.strip() for x in lines[-1].split('|')]
    rows.setdefault((int(rate),s),[]).append((int(i),float(c[8]),float(c[10]),int(c[13])))
for (rate,s),v in sorted(rows.items()):
    v.sort()
    print(rate,s,'dpcs',[x[1] for x in v],'median',statistics.median([x[1] for x in v]),'us/seg',[x[2] for x in v],'p99',[x[3] for x in v])
rates=sorted(set(r for r,_ in rows))
for rate in rates:
    b={i:x for i,x,_,_ in rows.get((rate,'bun'),[])}
    for s in ('old','new'):
        r=[x/b[i] for i,x,_,_ in rows.get((rate,s),[]) if i in b]
        if r: print(rate,s,'/bun per round',[round(x,3) for x in r],'median',round(statistics.median(r),3))
