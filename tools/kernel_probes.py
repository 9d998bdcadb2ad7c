"""Probes behind three design choices of chapter 02's kernels, each timed in one process (2 threads):

1. a `(T, B, 4H)` projection at T=784 written into a fresh tensor against into one that exists (page faults);
2. a compiled block of 16 LSTM steps that writes into slices of its inputs against one that returns its outputs;
3. the same compiled block with `xp + h @ W` (which the compiler turns into an `addmm` that first copies `xp`)
   against `xp - h @ (-W)`.

    python tools/kernel_probes.py > results/bench/kernel_probes.log
"""
import statistics, time, warnings
import torch
from adaptive_rnn.bench import device_name
from adaptive_rnn.train import cpu_settings

def med(f, n=20, warmup=3):
    for _ in range(warmup): f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

def block_returning(add_form):
    def block(xp, h, c, W):
        hs = []
        for t in range(xp.shape[0]):
            z = xp[t] + torch.mm(h, W) if add_form else xp[t] - torch.mm(h, -W)
            i, f, g, o = torch.sigmoid(z).chunk(4, 1)
            c = f * c + i * (2 * g - 1)
            h = o * (2 * torch.sigmoid(2 * c) - 1)
            hs.append(h)
        return torch.stack(hs), c
    return block

def block_writing(xp, h, c, W, out):
    for t in range(xp.shape[0]):
        i, f, g, o = torch.sigmoid(xp[t] - torch.mm(h, -W)).chunk(4, 1)
        c = f * c + i * (2 * g - 1)
        h = o * (2 * torch.sigmoid(2 * c) - 1)
        out[t].copy_(h)
    return c

def main():
    warnings.simplefilter('ignore')
    print(f"torch {torch.__version__}, {device_name()}, 2 threads; medians")
    with cpu_settings(torch.device('cpu'), 2), torch.no_grad():
        T, B, H, I = 784, 256, 110, 1
        x, W, b = torch.randn(T * B, I), torch.randn(I, 4 * H), torch.randn(4 * H)
        buf = torch.empty(T * B, 4 * H)
        fresh, existing = med(lambda: torch.addmm(b, x, W), 10), med(lambda: torch.addmm(b, x, W, out=buf), 10)
        print(f"1. projection (T=784, B=256, 4H=440): fresh tensor {fresh * 1e3:.1f} ms, existing buffer {existing * 1e3:.1f} ms")
        k = 16
        xp, h, c, Wh = torch.randn(k, B, 4 * H), torch.zeros(B, H), torch.zeros(B, H), torch.randn(H, 4 * H) * 0.1
        out = torch.empty(4 * k, B, H)[k:2 * k]                           # a slice of a larger tensor, as a kernel's slots
        fns = {'returning, xp - h@(-W)': (torch.compile(block_returning(False), dynamic=False), (xp, h, c, Wh)),
               'returning, xp + h@W': (torch.compile(block_returning(True), dynamic=False), (xp, h, c, Wh)),
               'writing into input slices': (torch.compile(block_writing, dynamic=False), (xp, h, c, Wh, out))}
        for name, (fn, args) in fns.items():
            t0 = time.perf_counter(); fn(*args); comp = time.perf_counter() - t0
            print(f"2/3. compiled block of {k} LSTM steps, {name}: {med(lambda: fn(*args)) / k * 1e6:.0f} µs a step (compiled in {comp:.0f} s)", flush=True)
        print(f"     eager matrix product alone: {med(lambda: torch.mm(h, Wh), 200) * 1e6:.0f} µs a step")

if __name__ == '__main__': main()
