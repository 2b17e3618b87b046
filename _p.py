import torch, time, hmm_engine as he, cProfile, pstats
K,D=64,40
m=he.GaussianHMM(K,D); m.means=torch.randn(K,D)
x=torch.randn(2000,D)
dec=m.stream(10)
def run():
    for i in range(0,2000,10): dec.push(x[i:i+10])
cProfile.run('run()','/tmp/prof')
pstats.Stats('/tmp/prof').sort_stats('tottime').print_stats(15)
