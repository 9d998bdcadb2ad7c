"""Probes behind two choices of chapter 02's LSTM kernel, each timed in one process (2 threads, rounds alternated):

1. the forward pass with x_t joined to h_{t-1} in the step's product (`_lstm_joint_step`) against the hoisted
   projection of the whole sequence (`_lstm_step`), in training (forward + backward) and inference, B=256, H=110,
   one input feature, T=50 and T=784;
2. the recurrent product, B=256, H=110: one eager call of oneDNN's operator directly, of the library's registered
   operator `adaptive_rnn::packed_mm` (what the compiled blocks call), and of a `torch.library.custom_op` wrapper
   of the same function (the other way to register one); then a compiled block of 16 LSTM steps calling each of
   the two registered operators;
3. the LSTM's forward pass for training (what the backward pass keeps) by the eager kernel and by the compiled
   blocks of 16 steps that call `adaptive_rnn::packed_mm`, T=50 and T=784;
4. the weight gradient of a block of steps, dW += dᵀ [h | x | 1] for d (16 or 32 steps × 256 rows, 4H=440) and
   [h | x | 1] (112 columns): `addmm_` (MKL) against oneDNN's product (Zᵀ d)ᵀ, as `_weight_grads` computes it.

    python tools/lstm_step_probe.py > results/bench/lstm_step_probe.log
"""
import inspect, statistics, time
import torch
from torch import nn, Tensor
from adaptive_rnn import layers
from adaptive_rnn.layers import LSTM
from adaptive_rnn.bench import device_name
from adaptive_rnn.train import cpu_settings

def hoisted_forward():
    "`_lstm_forward` without the joint step: the hoisted projection always."
    src = inspect.getsource(layers._lstm_forward).replace("    if I <= H:", "    if False:")
    assert src != inspect.getsource(layers._lstm_forward), 'the joint branch moved: update this probe'
    ns = dict(vars(layers)); exec(src, ns)
    return ns['_lstm_forward']

def forward_ab():
    variants = {'joint': layers._lstm_forward, 'hoisted': hoisted_forward()}
    for T, rounds in ((50, 30), (784, 8)):
        torch.manual_seed(0)
        m, x = LSTM.from_torch(nn.LSTM(1, 110, batch_first=True)), torch.randn(256, T, 1)
        def train():
            for p in m.parameters(): p.grad = None
            m(x)[0].sum().backward()
        def infer():
            with torch.no_grad(): m(x)
        for mode, fn in (('train', train), ('inference', infer)):
            ts = {k: [] for k in variants}
            for r in range(rounds + 2):
                for k, f in variants.items():
                    layers._lstm_forward = f
                    t0 = time.perf_counter(); fn(); dt = time.perf_counter() - t0
                    if r >= 2: ts[k].append(dt)
            layers._lstm_forward = variants['joint']
            med = {k: statistics.median(v) * 1e3 for k, v in ts.items()}
            print(f"1. T={T} {mode}: joint {med['joint']:.2f} ms, hoisted {med['hoisted']:.2f} ms, "
                  f"joint/hoisted {med['joint'] / med['hoisted']:.3f}", flush=True)

@torch.library.custom_op('lstm_step_probe::packed_mm', mutates_args=())
def custom_packed_mm(x: Tensor, w: Tensor) -> Tensor:
    return layers._packed_mm_impl(x, w)

@custom_packed_mm.register_fake
def _(x, w): return x.new_empty(x.shape[0], w.shape[0])

def product_calls(n=3000):
    B, H = 256, 110
    W, h = torch.randn(4 * H, H) * 0.1, torch.randn(B, H)
    def per_call(f, n=n):
        for _ in range(20): f()
        ts = []
        for _ in range(n):
            t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e6
    with layers._packed(W, rows=B):
        packed = layers._PACKED[layers._packed_key(W)]
        calls = {'oneDNN directly': lambda: torch.ops.mkldnn._linear_pointwise(h, packed, None, 'none', [], ''),
                 'adaptive_rnn::packed_mm': lambda: layers._packed_mm(h, W),
                 'custom_op wrapper': lambda: custom_packed_mm(h, W)}
        us = {k: per_call(f) for k, f in calls.items()}
        print('2. one product call: ' + ', '.join(f'{k} {v:.1f} µs' for k, v in us.items()), flush=True)
        xp, c = torch.randn(16, B, 4 * H), torch.randn(B, H)
        for name, op in (('adaptive_rnn::packed_mm', layers._packed_mm), ('custom_op wrapper', custom_packed_mm)):
            def block(xp, h, c, W):
                hs = []
                for t in range(xp.shape[0]):
                    i, f, g, o = torch.sigmoid(xp[t] + op(h, W)).chunk(4, 1)
                    c = f * c + i * (2 * g - 1)
                    h = o * (2 * torch.sigmoid(2 * c) - 1)
                    hs.append(h)
                return torch.stack(hs), c
            compiled = torch.compile(block, dynamic=False)
            t0 = time.perf_counter(); compiled(xp, h, c, W); secs = time.perf_counter() - t0
            print(f'2. compiled block of 16 LSTM steps with {name}: {per_call(lambda: compiled(xp, h, c, W), 200) / 16:.1f} µs a step '
                  f'(compiled in {secs:.0f} s)', flush=True)

def forward_for_training():
    B, H = 256, 110
    torch.manual_seed(0)
    cell = nn.LSTM(1, H)
    W_ih, W_hh, b = cell.weight_ih_l0.detach(), cell.weight_hh_l0.detach(), (cell.bias_ih_l0 + cell.bias_hh_l0).detach()
    h0 = c0 = torch.zeros(B, H)
    for T, rounds in ((50, 20), (784, 6)):                 # (without gradient recording, as inside the layer's autograd node)
        x = torch.randn(T, B, 1)
        fns = {'eager kernel': lambda: layers._lstm_forward(x, W_ih, b, h0, c0, W_hh, keep=True),
               'compiled blocks': lambda: layers._lstm_forward_compiled(x, W_ih, b, h0, c0, W_hh, 16, keep=True)}
        ts = {k: [] for k in fns}
        for r in range(rounds + 2):
            for k, f in fns.items():
                with torch.no_grad(): t0 = time.perf_counter(); f(); dt = time.perf_counter() - t0
                if r >= 2: ts[k].append(dt)
        print(f'3. T={T} forward keeping the activations: ' + ', '.join(f'{k} {statistics.median(v) * 1e3:.2f} ms' for k, v in ts.items()), flush=True)

def weight_gradient(n=50):
    for steps in (16, 32):
        rows = steps * 256
        d, Z, dW = torch.randn(rows, 440), torch.randn(rows, 112), torch.zeros(440, 112)
        calls = {'addmm_': lambda: dW.addmm_(d.t(), Z),
                 'oneDNN': lambda: dW.add_(torch.ops.mkldnn._linear_pointwise(Z.t(), d.t(), None, 'none', [], '').t())}
        ts = {k: [] for k in calls}
        for r in range(n + 5):
            for k, f in calls.items():
                t0 = time.perf_counter(); f(); dt = time.perf_counter() - t0
                if r >= 5: ts[k].append(dt)
        print(f'4. weight gradient of a {steps}-step block: ' + ', '.join(f'{k} {statistics.median(v) * 1e3:.2f} ms' for k, v in ts.items()), flush=True)

def main():
    with cpu_settings(torch.device('cpu'), 2):
        print(f"torch {torch.__version__}, {device_name()}, {torch.get_num_threads()} threads; medians, rounds alternated")
        if not layers._ONEDNN['ok']: print('(no oneDNN product in this build: both use torch.mm)')
        forward_ab()
        product_calls()
        forward_for_training()
        weight_gradient()

if __name__ == '__main__': main()
