"""Probe: the recurrent step's matrix product with `torch.mm` and with oneDNN's product on a packed weight, and a
compiled per-step element-wise call against the eager kernel's in-place operations (batch 256, hidden 110, 2 threads):

    python tools/product_probe.py > results/bench/product_probe.log
"""
import time, warnings
import torch
from adaptive_rnn.bench import device_name
from adaptive_rnn.layers import _Product, _lstm_step
from adaptive_rnn.train import cpu_settings

def per_call_us(f, n=500):
    for _ in range(50): f()
    t0 = time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter() - t0) / n * 1e6

def lstm_elementwise(xp_t, pre, c):
    a = torch.sigmoid(xp_t + pre)
    i, f, g, o = a.chunk(4, 1)
    c_new = f * c + i * (2 * g - 1)
    tc = 2 * torch.sigmoid(2 * c_new) - 1
    return a, c_new, tc, o * tc

def main():
    warnings.simplefilter('ignore')
    B, H = 256, 110
    print(f"torch {torch.__version__}, {device_name()}, 2 threads, batch {B}, hidden {H}; microseconds per call")
    with cpu_settings(torch.device('cpu'), 2):
        torch.manual_seed(0)
        W_hh, h, d = torch.randn(4 * H, H) * 0.1, torch.randn(B, H), torch.randn(B, 4 * H)
        fwd, bwd = _Product(W_hh, B), _Product(W_hh.t(), B)
        assert fwd.packed is not None, 'this build has no oneDNN product'
        print(f"forward  h W_hh^T: torch.mm {per_call_us(lambda: torch.mm(h, W_hh.t())):.0f}, oneDNN packed {per_call_us(lambda: fwd(h)):.0f}")
        print(f"backward d W_hh:   torch.mm {per_call_us(lambda: torch.mm(d, W_hh)):.0f}, oneDNN packed {per_call_us(lambda: bwd(d)):.0f}")
        xp, c = torch.randn(B, 4 * H), torch.randn(B, H)
        compiled = torch.compile(lstm_elementwise, dynamic=False)
        pre = fwd(h)
        step, a, new = _lstm_step(fwd), torch.empty(B, 4 * H), torch.empty(3, B, H)
        def eager_step(): a.copy_(xp); step((a, *a.chunk(4, -1), *new.unbind(0)), (h, c))
        prod_us = per_call_us(lambda: fwd(h))
        print(f"LSTM step element-wise: compiled call {per_call_us(lambda: compiled(xp, pre, c)):.0f}; "
              f"eager in-place step {per_call_us(eager_step):.0f} including the product ({prod_us:.0f}) and a copy of xp_t")

if __name__ == '__main__': main()
