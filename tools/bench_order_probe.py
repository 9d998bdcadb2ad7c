"""Probe: the `layers` benchmark's LSTM and GRU rows in a chosen order, in one process.

The ratios of `results/bench/layers.json` come from a fresh process in which the LSTM runs first. Run after
the GRU in the same process, `torch.nn.LSTM` at T=50 trains much faster (the C library's heap already holds
memory freed by the GRU runs, so its buffers are not faulted in again); this script measures that order:

    python tools/bench_order_probe.py gru lstm > results/bench/layers_order_probe.log
"""
import sys, time
import torch
from torch import nn
from adaptive_rnn.layers import LSTM, GRU
from adaptive_rnn.bench import _layer_calls, time_together, device_name
from adaptive_rnn.train import cpu_settings

def main(cells):
    print(f"torch {torch.__version__}, {device_name()}, 2 threads, batch 256, hidden 110, input 1; ratios of medians over rounds; order: {' '.join(cells)}")
    with cpu_settings(torch.device('cpu'), 2):
        for cell in cells:
            torch.manual_seed(0)
            ref_cls, cls = (nn.LSTM, LSTM) if cell == 'lstm' else (nn.GRU, GRU)
            ref = ref_cls(1, 110, batch_first=True)
            models = {'torch.nn': ref, 'eager': cls.from_torch(ref), 'compiled': cls.from_torch(ref, compiled=True)}
            for T in (50, 784):
                x = torch.randn(256, T, 1)
                for mode in ('train', 'inference'):
                    fns = {k: _layer_calls(m, x, mode == 'train') for k, m in models.items()}
                    fns['compiled']()                                  # compiles on first use
                    secs = time_together(fns, repeats=15 if T < 500 else 5)
                    print(cell, T, mode, ' '.join(f"{k} {v / secs['torch.nn']:.2f}" for k, v in secs.items()),
                          f"(torch.nn {secs['torch.nn'] * 1e3:.1f} ms)", flush=True)

if __name__ == '__main__':
    import warnings; warnings.simplefilter('ignore')
    main(sys.argv[1:] or ['gru', 'lstm'])
