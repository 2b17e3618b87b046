import torch, time, hmm_engine as he
for K in [16,64]:
  for D in [13,40]:
    m=he.GaussianHMM(K,D)
    m.means=torch.randn(K,D)
    x=torch.randn(2000,D)
    for lag in [None, 10]:
        dec=m.stream(lag)
        ts=[]
        for i in range(0,2000,10):
            t0=time.perf_counter(); dec.push(x[i:i+10]); ts.append(time.perf_counter()-t0)
        ts=sorted(ts[20:])
        print(K,D,lag, "median %.3f ms p95 %.3f"%(ts[len(ts)//2]*1e3, ts[int(len(ts)*.95)]*1e3), dec.t-dec.committed)
