"""Probe: how much of a layer's training time is the C library handing out fresh memory.

Above 32 MB, glibc's `malloc` maps new pages for every allocation and unmaps them when freed, so each training
step faults in its large buffers again. This script times the `layers` benchmark's training rows (batch 256,
hidden 110, input 1, 2 threads) in two fresh processes: with the default allocator, and with
`MALLOC_MMAP_MAX_=0` (every block from the heap, which keeps freed memory: no new pages after the first step).
Beside `torch.nn`, our eager and compiled layers, and the eager layer with its workspace turned off:

    python tools/heap_probe.py > results/bench/heap_probe.log
"""
import os, subprocess, sys

SETTINGS = {'default malloc': {}, 'MALLOC_MMAP_MAX_=0 (warm heap)': {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(1 << 40)}}

def child():
    import warnings; warnings.simplefilter('ignore')
    import torch
    from torch import nn
    from adaptive_rnn.layers import LSTM, GRU, workspace
    from adaptive_rnn.bench import _layer_calls, time_together
    from adaptive_rnn.train import cpu_settings
    with cpu_settings(torch.device('cpu'), 2):
        for cell, ref_cls, cls in (('lstm', nn.LSTM, LSTM), ('gru', nn.GRU, GRU)):
            torch.manual_seed(0)
            ref = ref_cls(1, 110, batch_first=True)
            models = {'torch.nn': ref, 'eager': cls.from_torch(ref), 'compiled': cls.from_torch(ref, compiled=True)}
            for T in (50, 784):
                x = torch.randn(256, T, 1)
                fns = {k: _layer_calls(m, x, True) for k, m in models.items()}
                def no_workspace(f=fns['eager']):
                    workspace.enabled = False
                    try: f()
                    finally: workspace.enabled = True
                fns['eager, no workspace'] = no_workspace
                fns['compiled']()                                      # compiles on first use
                secs = time_together(fns, repeats=9 if T < 500 else 5)
                print(f"  {cell} T={T} train: torch.nn {secs['torch.nn'] * 1e3:.0f} ms; ours/torch.nn: "
                      + ', '.join(f"{k} {v / secs['torch.nn']:.2f}" for k, v in secs.items() if k != 'torch.nn'), flush=True)
            workspace.release()

if __name__ == '__main__':
    if sys.argv[1:] == ['--child']: child()
    else:
        import torch
        from adaptive_rnn.bench import device_name
        print(f"torch {torch.__version__}, {device_name()}; medians over rounds timed in turn, each setting a fresh process", flush=True)
        for name, env in SETTINGS.items():
            print(name, flush=True)
            subprocess.run([sys.executable, __file__, '--child'], env={**os.environ, **env}, check=True)
