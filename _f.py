import numpy as np, torch, soundfile as sf, dataclasses
import torchaudio.functional as AF
from hmm_engine.frontend.stream import StreamingFeatures, StreamingResampler
from hmm_engine.frontend.features import FeatureConfig, extract_features
from hmm_engine.frontend.audio import load_audio, Audio
x, sr = sf.read("assets/sample_synth.wav", dtype="float32")
print(sr, len(x))
# resample to 48k as a "browser"
x48 = AF.resample(torch.from_numpy(x), sr, 48000).numpy()
for src, rate in [(x48, 48000), (AF.resample(torch.from_numpy(x), sr, 44100).numpy(), 44100)]:
    r = StreamingResampler(rate, 16000)
    rng = np.random.default_rng(0); out=[]; i=0
    while i < len(src):
        n = int(rng.integers(100, 5000)); out.append(r.push(src[i:i+n])); i+=n
    out.append(r.push(np.zeros(0), final=True))
    y = np.concatenate(out); ref = AF.resample(torch.from_numpy(src), rate, 16000).numpy()
    print(rate, len(y), len(ref), np.abs(y-ref).max())
    cfg = FeatureConfig(cmvn=False)
    sfeat = StreamingFeatures(cfg, rate)
    feats=[]; i=0
    while i < len(src):
        n = int(rng.integers(100, 24000)); f,_ = sfeat.push((src[i:i+n]*32767).astype(np.int16)); feats.append(f); i+=n
    feats.append(sfeat.push(None, final=True)[0])
    F = torch.cat(feats)
    ref16 = AF.resample(torch.from_numpy((np.clip(src*32767, -32768, 32767).astype(np.int16)/32768.0).astype(np.float32)), rate, 16000)
    off = extract_features(Audio(ref16.float(), 16000, rate, 1), cfg).values
    print(F.shape, off.shape, (F-off).abs().max().item(), (F[5:-5]-off[5:-5]).abs().max().item())
