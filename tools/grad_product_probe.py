"""Probe: a weight gradient dW += Dᵀ Z by MKL's `addmm_` against oneDNN's product (Zᵀ D)ᵀ, for the shapes the
library meets: a layer's block of steps (256 rows a step), ACT's ponder steps (32 or 128 rows each) and small
batches, on 1 and 2 threads. `_add_grad_product` takes oneDNN's product from 256 rows on.

    python tools/grad_product_probe.py > results/bench/grad_product_probe.log
"""
import statistics, time
import torch
from adaptive_rnn.bench import device_name

SHAPES = [  # rows, G (gates), K (inputs + state + 1), threads
    (32, 512, 128, 1), (128, 128, 128, 1), (160, 2048, 564, 1), (320, 2048, 512, 1), (512, 440, 112, 2),
    (640, 512, 180, 1), (1280, 512, 128, 1), (2560, 440, 112, 2), (4096, 440, 112, 1), (4096, 440, 112, 2), (8192, 440, 112, 2)]

def median_ms(f, n=60, warmup=5):
    for _ in range(warmup): f()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3

def main():
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {device_name()}; medians in ms")
    for rows, G, K, threads in SHAPES:
        torch.set_num_threads(threads)
        D, Z, dW = torch.randn(rows, G), torch.randn(rows, K), torch.zeros(G, K)
        mkl = median_ms(lambda: dW.addmm_(D.t(), Z))
        onednn = median_ms(lambda: dW.add_(torch.ops.mkldnn._linear_pointwise(Z.t(), D.t(), None, 'none', [], '').t()))
        print(f"rows {rows:5d}, G {G:4d}, K {K:3d}, {threads} thread(s): addmm_ {mkl:.3f}, oneDNN {onednn:.3f}, oneDNN/addmm_ {onednn / mkl:.2f}", flush=True)

if __name__ == '__main__': main()
